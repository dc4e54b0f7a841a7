//! `cloister measure`: the launch measurements a genuine launch of an image
//! produces, computed from the image parts and the VM shape, with the policy
//! lines an auditor pastes. Files are hashed here; the arithmetic is the pure
//! `cloister-measure` crate.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use cloister_measure::snp::{self, CpuType, KernelHashes, SnpLaunch};
use cloister_measure::tdx::{self, PageOrder};
use sha2::{Digest as _, Sha256, Sha384};

/// `cloister measure` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum MeasureCommand {
    /// AMD SEV-SNP: the launch digest (the report's `measurement`) of a QEMU
    /// guest from its OVMF image, vCPU count and model, and (direct boot with
    /// kernel-hashes=on) its kernel, initrd and command line.
    #[command(after_help = SNP_HELP)]
    Snp(SnpArgs),
    /// Intel TDX: MRTD from the TDVF image, and RTMR2 of a direct kernel boot
    /// (command line and initrd). RTMR0 and RTMR1 are not computed: see
    /// docs/measurements.md.
    #[command(after_help = TDX_HELP)]
    Tdx(TdxArgs),
}

const SNP_HELP: &str = "Examples:
  cloister measure snp --ovmf /usr/share/ovmf/OVMF.fd --vcpus 8 --vcpu-type EPYC-Genoa
  cloister measure snp --ovmf OVMF.amdsev.fd --vcpus 8 --vcpu-type EPYC-Milan \\
      --kernel vmlinuz --initrd initrd.img --append \"console=ttyS0 roothash=...\" --json

The inputs must be the very files and flags QEMU gets (-bios, -smp, -cpu,
-kernel, -initrd, -append; deploy/qemu/launch-snp.sh --print-measure prints
this command for a launch). A kernel needs a firmware with an SEV-SNP
kernel hashes section (OVMF's AmdSev build); plain OVMF boots it unmeasured,
so this command refuses. vCPU types: EPYC, EPYC-v1..v4, EPYC-IBPB, EPYC-Rome(-v1..v3),
EPYC-Milan(-v1, -v2), EPYC-Genoa(-v1), EPYC-Turin; or --vcpu-signature.
Exit status: 0 printed; 2 bad input (the message says which).";

const TDX_HELP: &str = "Examples:
  cloister measure tdx --tdvf /usr/share/ovmf/OVMF.fd
  cloister measure tdx --tdvf OVMF.fd --kernel vmlinuz --initrd initrd.img --append \"console=hvc0 roothash=...\"

MRTD depends only on the firmware (and the host kernel's page order, see
--page-order). RTMR2 is printed for a direct kernel boot: the command line
as OVMF measures it, then the initrd. RTMR0 (TD HOB, QEMU's ACPI tables) and
RTMR1 (the kernel after QEMU patches its header) depend on the QEMU version
and machine options: pin them from a reference boot's event log.
Exit status: 0 printed; 2 bad input (the message says which).";

/// Arguments of `cloister measure snp`.
#[derive(Debug, Args)]
pub(crate) struct SnpArgs {
    /// The OVMF image QEMU loads with -bios (the whole file).
    #[arg(long, value_name = "FILE")]
    ovmf: PathBuf,
    /// Number of vCPUs (-smp).
    #[arg(long, value_name = "N")]
    vcpus: u32,
    /// QEMU's vCPU model (-cpu), e.g. EPYC-Milan, EPYC-Genoa.
    #[arg(
        long,
        value_name = "TYPE",
        required_unless_present = "vcpu_signature",
        conflicts_with = "vcpu_signature"
    )]
    vcpu_type: Option<String>,
    /// The vCPU's CPUID signature instead of a type (hex, e.g. 0xa00f11).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_u32)]
    vcpu_signature: Option<u32>,
    /// SEV features of the guest (hex; QEMU's default 0x1, SNP active).
    #[arg(long, value_name = "HEX", default_value = "0x1", value_parser = parse_hex_u64)]
    guest_features: u64,
    #[command(flatten)]
    boot: DirectBoot,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cloister measure tdx`.
#[derive(Debug, Args)]
pub(crate) struct TdxArgs {
    /// The TDVF image (for OVMF with TDX support: the unified OVMF.fd).
    #[arg(long, value_name = "FILE")]
    tdvf: PathBuf,
    /// How the host kernel adds the firmware's pages: per-page (upstream
    /// Linux KVM) or per-section (earlier TDX host kernels).
    #[arg(long, value_enum, default_value = "per-page")]
    page_order: PageOrderArg,
    #[command(flatten)]
    boot: DirectBoot,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// A direct kernel boot (QEMU's -kernel, -initrd, -append).
#[derive(Debug, Args)]
struct DirectBoot {
    /// The kernel QEMU boots directly (-kernel).
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Its initrd (-initrd).
    #[arg(long, value_name = "FILE", requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Its command line (-append), exactly as QEMU gets it.
    #[arg(
        long,
        value_name = "CMDLINE",
        requires = "kernel",
        allow_hyphen_values = true
    )]
    append: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PageOrderArg {
    PerPage,
    PerSection,
}

fn parse_hex_u32(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16)
        .map_err(|e| format!("not a hex number: {e}"))
}

fn parse_hex_u64(s: &str) -> Result<u64, String> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .map_err(|e| format!("not a hex number: {e}"))
}

/// Runs `cloister measure`.
pub(crate) fn run(command: MeasureCommand) -> ExitCode {
    let result = match command {
        MeasureCommand::Snp(args) => measure_snp(&args),
        MeasureCommand::Tdx(args) => measure_tdx(&args),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cloister measure: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// SHA-256 and SHA-384 of a file, streamed (kernels and initrds can be large).
fn hash_file(path: &Path) -> anyhow::Result<([u8; 32], [u8; 48])> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let (mut s256, mut s384) = (Sha256::new(), Sha384::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let Some(read) = buf.get(..n).filter(|r| !r.is_empty()) else {
            break;
        };
        s256.update(read);
        s384.update(read);
    }
    Ok((s256.finalize().into(), s384.finalize().into()))
}

fn measure_snp(args: &SnpArgs) -> anyhow::Result<String> {
    let (cpu_name, signature) = match (&args.vcpu_type, args.vcpu_signature) {
        (_, Some(sig)) => (format!("signature {sig:#x}"), sig),
        (Some(name), None) => {
            let cpu = CpuType::named(name).ok_or_else(|| {
                let known: Vec<&str> = snp::CPU_TYPES.iter().map(|c| c.name).collect();
                anyhow::anyhow!("unknown --vcpu-type {name:?}; known: {}", known.join(", "))
            })?;
            (cpu.name.to_string(), cpu.signature())
        }
        (None, None) => anyhow::bail!("give --vcpu-type or --vcpu-signature"),
    };
    let ovmf = read(&args.ovmf)?;
    let kernel = match &args.boot.kernel {
        None => None,
        Some(k) => {
            let (kernel, _) = hash_file(k)?;
            let initrd = args
                .boot
                .initrd
                .as_deref()
                .map(hash_file)
                .transpose()?
                .map(|h| h.0);
            Some(KernelHashes::new(
                kernel,
                initrd,
                args.boot.append.as_deref().unwrap_or(""),
            ))
        }
    };
    let digest = snp::launch_digest(&SnpLaunch {
        ovmf: &ovmf,
        vcpus: args.vcpus,
        vcpu_signature: signature,
        guest_features: args.guest_features,
        kernel,
    })
    .map_err(|e| anyhow::anyhow!("{}: {e}", args.ovmf.display()))?;
    let hex = hex::encode(digest);
    let policy = format!("[sev_snp]\nmeasurement = [\"{hex}\"]\n");
    // What governance allows in the Registry for nodes launched this way.
    let registry = cloister_contracts::signer_record::measurement_digest(
        "sev-snp",
        &[("measurement".to_string(), hex.clone())]
            .into_iter()
            .collect(),
    )?;
    let ovmf_sha = hex::encode(Sha256::digest(&ovmf));
    if args.json {
        let v = serde_json::json!({
            "platform": "sev-snp",
            "measurement": hex,
            "inputs": {
                "ovmf": args.ovmf, "ovmf_sha256": ovmf_sha, "vcpus": args.vcpus,
                "vcpu_type": args.vcpu_type, "vcpu_signature": format!("{signature:#x}"),
                "guest_features": format!("{:#x}", args.guest_features),
                "kernel": args.boot.kernel, "initrd": args.boot.initrd, "append": args.boot.append,
            },
            "policy": policy,
            "registry_measurement_set": registry.to_string(),
        });
        return Ok(format!("{v:#}\n"));
    }
    let mut out = String::new();
    writeln!(
        out,
        "SEV-SNP launch digest (report field `measurement`):\n  {hex}\n"
    )?;
    writeln!(
        out,
        "  firmware  {} (sha256 {ovmf_sha})",
        args.ovmf.display()
    )?;
    writeln!(
        out,
        "  vCPUs     {} x {cpu_name} (CPUID signature {signature:#x})",
        args.vcpus
    )?;
    writeln!(out, "  features  {:#x}", args.guest_features)?;
    match &args.boot.kernel {
        Some(k) => writeln!(
            out,
            "  kernel    {} (direct boot, kernel-hashes=on), initrd {}, append {:?}",
            k.display(),
            args.boot
                .initrd
                .as_deref()
                .map_or("none".into(), |p| p.display().to_string()),
            args.boot.append.as_deref().unwrap_or("")
        )?,
        None => writeln!(
            out,
            "  kernel    none measured (the firmware boots from disk)"
        )?,
    }
    writeln!(
        out,
        "\nPolicy lines for an auditor (cloister verify / proxy / router --policy):\n\n{policy}"
    )?;
    writeln!(
        out,
        "Registry measurement set (governance: cloister chain allow --measurement ...):\n  {registry}"
    )?;
    Ok(out)
}

fn measure_tdx(args: &TdxArgs) -> anyhow::Result<String> {
    let tdvf = read(&args.tdvf)?;
    let order = match args.page_order {
        PageOrderArg::PerPage => PageOrder::PerPage,
        PageOrderArg::PerSection => PageOrder::PerSection,
    };
    let mrtd = hex::encode(
        tdx::mrtd(&tdvf, order).map_err(|e| anyhow::anyhow!("{}: {e}", args.tdvf.display()))?,
    );
    let rtmr2 = match &args.boot.kernel {
        None => None,
        Some(k) => {
            // Read so that a missing kernel is an error now, not at launch.
            hash_file(k)?;
            let initrd = args
                .boot
                .initrd
                .as_deref()
                .map(hash_file)
                .transpose()?
                .map(|h| h.1);
            Some(hex::encode(tdx::rtmr2(
                args.boot.append.as_deref().unwrap_or(""),
                initrd,
            )))
        }
    };
    let mut policy = format!("[tdx]\nmrtd = [\"{mrtd}\"]\n");
    if let Some(r) = &rtmr2 {
        writeln!(policy, "rtmr2 = [\"{r}\"]")?;
    }
    let tdvf_sha = hex::encode(Sha256::digest(&tdvf));
    if args.json {
        let v = serde_json::json!({
            "platform": "tdx",
            "mrtd": mrtd,
            "rtmr2": rtmr2,
            "not_computed": ["rtmr0", "rtmr1", "rtmr3"],
            "inputs": {
                "tdvf": args.tdvf, "tdvf_sha256": tdvf_sha,
                "page_order": match args.page_order {
                    PageOrderArg::PerPage => "per-page",
                    PageOrderArg::PerSection => "per-section",
                },
                "kernel": args.boot.kernel, "initrd": args.boot.initrd, "append": args.boot.append,
            },
            "policy": policy,
        });
        return Ok(format!("{v:#}\n"));
    }
    let mut out = String::new();
    writeln!(out, "TDX MRTD:\n  {mrtd}")?;
    match &rtmr2 {
        Some(r) => writeln!(
            out,
            "TDX RTMR2 (command line {:?}, initrd {}):\n  {r}",
            args.boot.append.as_deref().unwrap_or(""),
            args.boot
                .initrd
                .as_deref()
                .map_or("none".into(), |p| p.display().to_string())
        )?,
        None => writeln!(
            out,
            "TDX RTMR2: not computed (no --kernel: not a direct boot)"
        )?,
    }
    let order = match args.page_order {
        PageOrderArg::PerPage => "per page",
        PageOrderArg::PerSection => "per section",
    };
    writeln!(
        out,
        "\n  firmware  {} (sha256 {tdvf_sha}), pages added {order}",
        args.tdvf.display()
    )?;
    writeln!(
        out,
        "  RTMR0 and RTMR1 are not computed: they depend on QEMU's generated tables and its patching"
    )?;
    writeln!(
        out,
        "  of the kernel header; take them from a reference boot's event log (docs/measurements.md)."
    )?;
    writeln!(
        out,
        "\nPolicy lines for an auditor (cloister verify / proxy / router --policy):\n\n{policy}"
    )?;
    Ok(out)
}
