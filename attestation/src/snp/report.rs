//! AMD SEV-SNP `ATTESTATION_REPORT` parser (versions 2, 3 and 5).
//!
//! Layout from AMD's "SEV Secure Nested Paging Firmware ABI Specification"
//! (56860), Table "ATTESTATION_REPORT Structure"; 1184 bytes, little-endian:
//!
//! ```text
//! 0x000 version u32        0x004 guest_svn u32      0x008 policy u64
//! 0x010 family_id [16]     0x020 image_id [16]      0x030 vmpl u32
//! 0x034 signature_algo u32 0x038 current_tcb u64    0x040 platform_info u64
//! 0x048 key_info u32       0x04C reserved           0x050 report_data [64]
//! 0x090 measurement [48]   0x0C0 host_data [32]     0x0E0 id_key_digest [48]
//! 0x110 author_key_digest [48]                      0x140 report_id [32]
//! 0x160 report_id_ma [32]  0x180 reported_tcb u64
//! 0x188 cpuid fam/mod/step (v3+) and reserved       0x1A0 chip_id [64]
//! 0x1E0 committed_tcb u64  0x1E8 current build/minor/major
//! 0x1EC committed build/minor/major                 0x1F0 launch_tcb u64
//! 0x1F8 launch_mit_vector u64 (v5)                  0x200 current_mit_vector u64 (v5)
//! 0x2A0 signature: r [72] LE, s [72] LE, reserved   (signed span: 0x000..0x2A0)
//! ```

use std::fmt;

use crate::reader::{Reader, Truncated};

/// Size of an attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed part of the report.
pub const SIGNED_LEN: usize = 0x2A0;

/// Why bytes are not an SNP attestation report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Shorter than a report.
    #[error("not a complete SEV-SNP report: {0}")]
    Truncated(#[from] Truncated),
    /// Longer than a report.
    #[error("an SEV-SNP report is {REPORT_LEN} bytes; {0} bytes given")]
    TrailingBytes(usize),
    /// A version other than 2, 3 or 5.
    #[error("SEV-SNP report version {0} is not supported (2, 3 and 5 are)")]
    UnsupportedVersion(u32),
    /// A non-zero byte in the unsigned area after the signature, which the
    /// firmware leaves zero: anything there could be changed by anyone.
    #[error("byte {offset:#x} after the signature is {value:#04x}, not zero")]
    NonZeroAfterSignature {
        /// Offset in the report.
        offset: usize,
        /// The byte found.
        value: u8,
    },
}

/// The processor generation, which fixes the TCB layout and the AMD root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Product {
    /// EPYC 7003.
    Milan,
    /// EPYC 9004/8004.
    Genoa,
    /// EPYC 9005.
    Turin,
}

impl Product {
    /// AMD's name, as in KDS URLs and certificate names.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// From the CPUID family and model a v3+ report carries.
    pub const fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Self::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Self::Genoa),
            (0x1A, 0x00..=0x1F) => Some(Self::Turin),
            _ => None,
        }
    }

    /// From a certificate product name or CN (`Milan-B0`, `SEV-Genoa`, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Milan, Self::Genoa, Self::Turin]
            .into_iter()
            .find(|p| name.contains(p.name()))
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A TCB_VERSION value with its components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcb {
    /// Boot loader SVN.
    pub bootloader: u8,
    /// PSP OS SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
    /// FMC SVN (Turin only).
    pub fmc: Option<u8>,
}

impl Tcb {
    /// Splits a raw TCB_VERSION. Turin moved the fields:
    /// Milan/Genoa `[bl, tee, 0, 0, 0, 0, snp, ucode]`,
    /// Turin `[fmc, bl, tee, snp, 0, 0, 0, ucode]`.
    pub const fn from_raw(raw: u64, product: Product) -> Self {
        let b = raw.to_le_bytes();
        match product {
            Product::Turin => Self {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
            Product::Milan | Product::Genoa => Self {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
        }
    }
}

impl fmt::Display for Tcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bootloader={} tee={} snp={} microcode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// Guest policy bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    /// SMT may be enabled on the host.
    pub const fn smt_allowed(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    /// A migration agent may be associated with the guest.
    pub const fn migrate_ma(self) -> bool {
        self.0 & (1 << 18) != 0
    }
    /// The guest may be debugged (its memory is not confidential).
    pub const fn debug(self) -> bool {
        self.0 & (1 << 19) != 0
    }
    /// The guest may run on one socket only.
    pub const fn single_socket(self) -> bool {
        self.0 & (1 << 20) != 0
    }
}

/// Platform info bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    /// SMT is enabled on the host.
    pub const fn smt_enabled(self) -> bool {
        self.0 & 1 != 0
    }
    /// Transparent SME is enabled.
    pub const fn tsme_enabled(self) -> bool {
        self.0 & 2 != 0
    }
}

/// Which key signed the report (`KEY_INFO.SIGNING_KEY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key (cloud provider).
    Vlek,
    /// No key: the report is unsigned.
    None,
    /// A reserved value.
    Reserved(u8),
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vcek => f.write_str("VCEK"),
            Self::Vlek => f.write_str("VLEK"),
            Self::None => f.write_str("none"),
            Self::Reserved(v) => write!(f, "reserved ({v})"),
        }
    }
}

/// A parsed attestation report borrowing the bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<'a> {
    /// Report format version.
    pub version: u32,
    /// Guest SVN.
    pub guest_svn: u32,
    /// Guest policy.
    pub policy: GuestPolicy,
    /// Family id from the ID block.
    pub family_id: [u8; 16],
    /// Image id from the ID block.
    pub image_id: [u8; 16],
    /// VMPL the report was requested at.
    pub vmpl: u32,
    /// Signature algorithm (1 = ECDSA P-384 with SHA-384).
    pub signature_algo: u32,
    /// Current TCB (raw).
    pub current_tcb: u64,
    /// Platform info.
    pub platform_info: PlatformInfo,
    /// Raw KEY_INFO.
    pub key_info: u32,
    /// Guest-chosen data (our binding).
    pub report_data: [u8; 64],
    /// Launch measurement.
    pub measurement: [u8; 48],
    /// Host-provided data.
    pub host_data: [u8; 32],
    /// Digest of the ID key.
    pub id_key_digest: [u8; 48],
    /// Digest of the author key.
    pub author_key_digest: [u8; 48],
    /// Report id of the guest.
    pub report_id: [u8; 32],
    /// Report id of the migration agent.
    pub report_id_ma: [u8; 32],
    /// TCB the VCEK is derived from (raw).
    pub reported_tcb: u64,
    /// CPUID family, model, stepping (v3+).
    pub cpuid: Option<(u8, u8, u8)>,
    /// Chip id (zero when masked).
    pub chip_id: [u8; 64],
    /// Committed TCB (raw).
    pub committed_tcb: u64,
    /// Current firmware version (major, minor, build).
    pub current_version: (u8, u8, u8),
    /// Committed firmware version (major, minor, build).
    pub committed_version: (u8, u8, u8),
    /// Launch TCB (raw).
    pub launch_tcb: u64,
    /// Signature r, little-endian, 72 bytes.
    pub signature_r: [u8; 72],
    /// Signature s, little-endian, 72 bytes.
    pub signature_s: [u8; 72],
    raw: &'a [u8],
}

impl<'a> Report<'a> {
    /// Parses a report; it must be exactly [`REPORT_LEN`] bytes of a known version.
    pub fn parse(raw: &'a [u8]) -> Result<Self, ReportError> {
        let mut r = Reader::new(raw);
        let version = r.u32_le("version")?;
        if !matches!(version, 2 | 3 | 5) {
            return Err(ReportError::UnsupportedVersion(version));
        }
        if raw.len() > REPORT_LEN {
            return Err(ReportError::TrailingBytes(raw.len()));
        }
        let guest_svn = r.u32_le("guest_svn")?;
        let policy = GuestPolicy(r.u64_le("policy")?);
        let family_id = r.array("family_id")?;
        let image_id = r.array("image_id")?;
        let vmpl = r.u32_le("vmpl")?;
        let signature_algo = r.u32_le("signature_algo")?;
        let current_tcb = r.u64_le("current_tcb")?;
        let platform_info = PlatformInfo(r.u64_le("platform_info")?);
        let key_info = r.u32_le("key_info")?;
        r.take(4, "reserved 0x4C")?;
        let report_data = r.array("report_data")?;
        let measurement = r.array("measurement")?;
        let host_data = r.array("host_data")?;
        let id_key_digest = r.array("id_key_digest")?;
        let author_key_digest = r.array("author_key_digest")?;
        let report_id = r.array("report_id")?;
        let report_id_ma = r.array("report_id_ma")?;
        let reported_tcb = r.u64_le("reported_tcb")?;
        let [family, model, stepping] = r.array("cpuid")?;
        let cpuid = (version >= 3).then_some((family, model, stepping));
        r.take(0x1A0 - 0x18B, "reserved 0x18B")?;
        let chip_id = r.array("chip_id")?;
        let committed_tcb = r.u64_le("committed_tcb")?;
        let [cur_build, cur_minor, cur_major, _] = r.array("current version")?;
        let [com_build, com_minor, com_major, _] = r.array("committed version")?;
        let launch_tcb = r.u64_le("launch_tcb")?;
        r.take(SIGNED_LEN - 0x1F8, "mitigation vectors and reserved")?;
        let signature_r = r.array("signature r")?;
        let signature_s = r.array("signature s")?;
        let after = r.take(REPORT_LEN - SIGNED_LEN - 144, "signature reserved")?;
        if let Some((i, &value)) = after.iter().enumerate().find(|(_, b)| **b != 0) {
            return Err(ReportError::NonZeroAfterSignature {
                offset: SIGNED_LEN + 144 + i,
                value,
            });
        }
        Ok(Self {
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            signature_algo,
            current_tcb,
            platform_info,
            key_info,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid,
            chip_id,
            committed_tcb,
            current_version: (cur_major, cur_minor, cur_build),
            committed_version: (com_major, com_minor, com_build),
            launch_tcb,
            signature_r,
            signature_s,
            raw,
        })
    }

    /// The bytes the signature covers, as received.
    pub fn signed_bytes(&self) -> &'a [u8] {
        self.raw.get(..SIGNED_LEN).unwrap_or_default()
    }

    /// The whole report as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Which key signed the report.
    pub const fn signing_key(&self) -> SigningKey {
        match (self.key_info >> 2) & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            // Masked to three bits above, so the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            other => SigningKey::Reserved(other as u8),
        }
    }

    /// The product named by the CPUID fields (v3+ reports only).
    pub fn product_from_cpuid(&self) -> Option<Product> {
        self.cpuid.and_then(|(f, m, _)| Product::from_cpuid(f, m))
    }
}
