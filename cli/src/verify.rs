//! `cloister verify`: the auditor's offline verifier.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cloister_attestation::bundle::{self, BundleOptions, EvidenceBundle};
use cloister_attestation::snp::{self, AmdCrl, SnpCertChain};
use cloister_attestation::tdx::{self, TdxCollateral};
use cloister_attestation::{Verdict, gpu};

use crate::input::{at, hex_bytes, policy, read_file};
use crate::render;

/// Options every verify subcommand shares.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Verify as of this time (RFC 3339, e.g. 2025-03-01T00:00:00Z) instead
    /// of now. Collateral and certificates must be valid at that time.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Print the verdict as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options for subcommands that apply a policy.
#[derive(Debug, Args)]
pub(crate) struct WithPolicy {
    /// Appraisal policy (TOML). Without it the default applies: genuine TDX
    /// or SEV-SNP hardware, TDX UpToDate only, no debug or profiled TDs, no
    /// debuggable SNP guests, simulated evidence refused, and NO measurement
    /// pinned (any code in a genuine VM passes; the verdict says so). Format
    /// and meaning: README "Policy" and docs/attestation-policy.md.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

/// How the evidence is shown to be fresh: one of the two is required, so
/// that accepting a replayed report is always a choice someone made.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub(crate) struct Freshness {
    /// The nonce you sent the node (64 hex digits): the evidence must answer
    /// it, which shows it was made after you asked.
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// Accept whatever nonce the evidence answers: for re-verifying logged
    /// evidence whose nonce is checked elsewhere. The verdict then lists
    /// "freshness" under not checked.
    #[arg(long)]
    any_nonce: bool,
}

/// What `not_checked` says when the caller gave `--any-nonce`.
const FRESHNESS_NOT_CHECKED: &str =
    "freshness: --any-nonce was given, so the evidence may be a replay of an older report";

impl Freshness {
    /// The nonce to require, if any; neither flag is unusable input.
    fn expected(&self) -> Result<Option<[u8; 32]>> {
        if self.nonce.is_none() && !self.any_nonce {
            anyhow::bail!(
                "say how the evidence is fresh: --nonce HEX (the nonce you sent the node; \
                 without it a replayed old report would be accepted) or --any-nonce \
                 (re-verifying logged evidence whose nonce is checked elsewhere)"
            );
        }
        self.nonce
            .as_deref()
            .map(|h| hex_bytes::<32>("--nonce", h))
            .transpose()
    }

    fn note(&self, verdict: &mut Verdict) {
        if self.any_nonce {
            verdict.not_checked.push(FRESHNESS_NOT_CHECKED.to_owned());
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum VerifyCommand {
    /// Verify an Intel TDX DCAP quote (v4 or v5) with Intel PCS collateral.
    ///
    /// The PCK certificate chain is taken from the quote; it must end in the
    /// Intel SGX Root CA pinned in this binary.
    Tdx {
        /// The raw quote, as the TD produced it.
        #[arg(value_name = "QUOTE")]
        quote: PathBuf,
        /// Collateral JSON (TCB info, QE identity, CRLs and their issuer
        /// chains) for the quote's FMSPC.
        #[arg(long, value_name = "FILE")]
        collateral: PathBuf,
        /// Require the TD report data to equal this (128 hex digits).
        #[arg(long, value_name = "HEX")]
        report_data: Option<String>,
        #[command(flatten)]
        policy: WithPolicy,
        #[command(flatten)]
        common: Common,
    },
    /// Verify an AMD SEV-SNP attestation report (v2, v3 or v5) with its
    /// VCEK or VLEK and the AMD certificate chain.
    Snp {
        /// The raw 1184-byte report.
        #[arg(value_name = "REPORT")]
        report: PathBuf,
        /// VCEK certificate (PEM or DER).
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "vlek",
            conflicts_with = "vlek"
        )]
        vcek: Option<PathBuf>,
        /// VLEK certificate (PEM or DER), for reports signed by a cloud's VLEK.
        #[arg(long, value_name = "FILE")]
        vlek: Option<PathBuf>,
        /// ASK certificate (issuer of VCEKs).
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "asvk",
            conflicts_with = "asvk"
        )]
        ask: Option<PathBuf>,
        /// ASVK certificate (issuer of VLEKs).
        #[arg(long, value_name = "FILE")]
        asvk: Option<PathBuf>,
        /// ARK certificate. Optional: AMD's root for the report's product is
        /// pinned in this binary, and a given ARK must be identical to it.
        #[arg(long, value_name = "FILE")]
        ark: Option<PathBuf>,
        /// AMD's CRL for the ARK (DER or PEM, from KDS
        /// /vcek/v1/{product}/crl or /vlek/v1/{product}/crl). With it, a
        /// revoked ASK/ASVK is refused; without it, revocation is listed as
        /// not checked.
        #[arg(long, value_name = "FILE")]
        crl: Option<PathBuf>,
        /// Require the report data to equal this (128 hex digits).
        #[arg(long, value_name = "HEX")]
        report_data: Option<String>,
        #[command(flatten)]
        policy: WithPolicy,
        #[command(flatten)]
        common: Common,
    },
    /// Verify an NVIDIA H100/H200 attestation report (SPDM GET_MEASUREMENTS
    /// request and response) with its device certificate chain.
    ///
    /// Checks the report signature and the chain to the NVIDIA Device
    /// Identity CA. Not checked: OCSP revocation and reference measurements
    /// (RIMs), which need NVIDIA's online services.
    Gpu {
        /// The raw report.
        #[arg(value_name = "REPORT")]
        report: PathBuf,
        /// Device certificate chain (PEM, leaf first).
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        #[command(flatten)]
        freshness: Freshness,
        #[command(flatten)]
        common: Common,
    },
    /// Verify a Cloister evidence bundle: the TDX, SNP or simulated evidence,
    /// its binding to the nonce, identity and GPU reports, and every GPU report.
    Bundle {
        /// Evidence bundle JSON, as a node's /attestation endpoint serves it.
        #[arg(value_name = "FILE")]
        bundle: PathBuf,
        /// TDX collateral to use instead of the bundle's own.
        #[arg(long, value_name = "FILE")]
        collateral: Option<PathBuf>,
        /// AMD's CRL (DER or PEM, from KDS /vcek/v1/{product}/crl) to use
        /// instead of the bundle's own, for SEV-SNP bundles.
        #[arg(long, value_name = "FILE")]
        amd_crl: Option<PathBuf>,
        #[command(flatten)]
        freshness: Freshness,
        #[command(flatten)]
        policy: WithPolicy,
        #[command(flatten)]
        common: Common,
    },
}

/// Runs a verify subcommand; returns the process exit status.
pub(crate) fn run(command: VerifyCommand) -> ExitCode {
    let json = match &command {
        VerifyCommand::Tdx { common, .. }
        | VerifyCommand::Snp { common, .. }
        | VerifyCommand::Gpu { common, .. }
        | VerifyCommand::Bundle { common, .. } => common.json,
    };
    match verdict(command) {
        Ok(verdict) => {
            render::verdict(&verdict, json);
            if verdict.accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            render::unusable_input(&error, json);
            ExitCode::from(2)
        }
    }
}

/// Reads an AMD CRL file.
fn read_crl(path: &std::path::Path) -> Result<AmdCrl> {
    AmdCrl::parse(&read_file("AMD CRL", path)?).with_context(|| format!("{}", path.display()))
}

/// Computes the verdict; `Err` is unusable input (exit status 2).
fn verdict(command: VerifyCommand) -> Result<Verdict> {
    match command {
        VerifyCommand::Tdx {
            quote,
            collateral,
            report_data,
            policy: p,
            common,
        } => {
            let now = at(common.at.as_deref())?;
            let policy = policy(p.policy.as_deref())?;
            let expected = report_data
                .map(|h| hex_bytes::<64>("--report-data", &h))
                .transpose()?;
            let raw = read_file("quote", &quote)?;
            let collateral = TdxCollateral::from_json(&read_file("collateral", &collateral)?)
                .context("--collateral")?;
            tdx::appraise(&raw, &collateral, &policy, now, expected.as_ref())
                .with_context(|| format!("{} is not a DCAP quote", quote.display()))
        }
        VerifyCommand::Snp {
            report,
            vcek,
            vlek,
            ask,
            asvk,
            ark,
            crl,
            report_data,
            policy: p,
            common,
        } => {
            let now = at(common.at.as_deref())?;
            let policy = policy(p.policy.as_deref())?;
            let expected = report_data
                .map(|h| hex_bytes::<64>("--report-data", &h))
                .transpose()?;
            let raw = read_file("report", &report)?;
            let vek = match (vcek, vlek) {
                (Some(path), _) => read_file("VCEK", &path)?,
                (None, Some(path)) => read_file("VLEK", &path)?,
                (None, None) => anyhow::bail!("give --vcek or --vlek"),
            };
            let issuer = match (ask, asvk) {
                (Some(path), _) => read_file("ASK", &path)?,
                (None, Some(path)) => read_file("ASVK", &path)?,
                (None, None) => anyhow::bail!("give --ask or --asvk"),
            };
            let ark = ark.map(|path| read_file("ARK", &path)).transpose()?;
            let mut chain = SnpCertChain::parse(ark.as_deref(), &issuer, &vek)?;
            if let Some(path) = crl {
                chain = chain.with_crl(read_crl(&path)?);
            }
            snp::appraise(&raw, &chain, &policy, now, expected.as_ref())
                .with_context(|| format!("{} is not an SEV-SNP report", report.display()))
        }
        VerifyCommand::Gpu {
            report,
            chain,
            freshness,
            common,
        } => {
            let now = at(common.at.as_deref())?;
            let nonce = freshness.expected()?;
            let raw = read_file("report", &report)?;
            let chain = read_file("certificate chain", &chain)?;
            gpu::GpuReport::parse(&raw)
                .with_context(|| format!("{} is not a GPU attestation report", report.display()))?;
            let mut verdict = gpu::verdict(&raw, &chain, nonce.as_ref(), now);
            freshness.note(&mut verdict);
            Ok(verdict)
        }
        VerifyCommand::Bundle {
            bundle: path,
            collateral,
            amd_crl,
            freshness,
            policy: p,
            common,
        } => {
            let now = at(common.at.as_deref())?;
            let policy = policy(p.policy.as_deref())?;
            let expected_nonce = freshness.expected()?;
            let collateral = collateral
                .map(|c| {
                    TdxCollateral::from_json(&read_file("collateral", &c)?).context("--collateral")
                })
                .transpose()?;
            let bundle = EvidenceBundle::from_json(&read_file("bundle", &path)?)
                .with_context(|| format!("{}", path.display()))?;
            let amd_crl = amd_crl.as_deref().map(read_crl).transpose()?;
            let options = BundleOptions {
                expected_nonce,
                tdx_collateral: collateral.as_ref(),
                amd_crl: amd_crl.as_ref(),
            };
            let mut verdict = bundle::appraise(&bundle, &policy, now, &options)?;
            freshness.note(&mut verdict);
            Ok(verdict)
        }
    }
}
