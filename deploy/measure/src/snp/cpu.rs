//! vCPU models and their CPUID signatures (family/model/stepping encoded as
//! CPUID Fn0000_0001_EAX, AMD's CPUID specification #25481), which QEMU puts
//! in RDX of every initial VMSA.

/// The family/model/stepping signature as CPUID leaf 1 EAX encodes it.
pub fn vcpu_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_ext) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    (family_ext << 20)
        | (((model >> 4) & 0xf) << 16)
        | (family_low << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

/// A QEMU `-cpu` model for SEV-SNP guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuType {
    /// QEMU's name for it.
    pub name: &'static str,
    /// Family, model, stepping of QEMU's definition.
    pub family_model_stepping: (u32, u32, u32),
}

/// QEMU's EPYC models (the versions of a model share its signature).
pub const CPU_TYPES: &[CpuType] = &[
    t("EPYC", 23, 1, 2),
    t("EPYC-v1", 23, 1, 2),
    t("EPYC-v2", 23, 1, 2),
    t("EPYC-IBPB", 23, 1, 2),
    t("EPYC-v3", 23, 1, 2),
    t("EPYC-v4", 23, 1, 2),
    t("EPYC-Rome", 23, 49, 0),
    t("EPYC-Rome-v1", 23, 49, 0),
    t("EPYC-Rome-v2", 23, 49, 0),
    t("EPYC-Rome-v3", 23, 49, 0),
    t("EPYC-Milan", 25, 1, 1),
    t("EPYC-Milan-v1", 25, 1, 1),
    t("EPYC-Milan-v2", 25, 1, 1),
    t("EPYC-Genoa", 25, 17, 0),
    t("EPYC-Genoa-v1", 25, 17, 0),
    t("EPYC-Turin", 26, 0, 0),
];

const fn t(name: &'static str, family: u32, model: u32, stepping: u32) -> CpuType {
    CpuType {
        name,
        family_model_stepping: (family, model, stepping),
    }
}

impl CpuType {
    /// The model QEMU calls `name` (case-insensitive).
    pub fn named(name: &str) -> Option<Self> {
        CPU_TYPES
            .iter()
            .copied()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Its CPUID signature.
    pub fn signature(&self) -> u32 {
        let (f, m, s) = self.family_model_stepping;
        vcpu_signature(f, m, s)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_match_cpuid_encoding() {
        // Milan: family 0x19 = 0xf + 0xa, model 1, stepping 1.
        assert_eq!(
            super::CpuType::named("epyc-milan").map(|c| c.signature()),
            Some(0x00a0_0f11)
        );
        assert_eq!(
            super::CpuType::named("EPYC-Genoa").map(|c| c.signature()),
            Some(0x00a1_0f10)
        );
        assert_eq!(
            super::CpuType::named("EPYC").map(|c| c.signature()),
            Some(0x0080_0f12)
        );
        assert_eq!(super::CpuType::named("Skylake"), None);
    }
}
