//! Pinned vendor trust anchors (see `attestation/roots/README.md`).

/// Intel SGX Root CA, DER. Root of every TDX and SGX PCK chain.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("../roots/intel_sgx_root_ca.der");

/// AMD Root Key for Milan, PEM.
pub const AMD_ARK_MILAN_PEM: &[u8] = include_bytes!("../roots/amd_ark_milan.pem");
/// AMD Root Key for Genoa, PEM.
pub const AMD_ARK_GENOA_PEM: &[u8] = include_bytes!("../roots/amd_ark_genoa.pem");
/// AMD Root Key for Turin, PEM.
pub const AMD_ARK_TURIN_PEM: &[u8] = include_bytes!("../roots/amd_ark_turin.pem");

/// NVIDIA Device Identity CA, PEM. Root of every Hopper/Blackwell device chain.
pub const NVIDIA_DEVICE_IDENTITY_CA_PEM: &[u8] =
    include_bytes!("../roots/nvidia_device_identity_ca.pem");
