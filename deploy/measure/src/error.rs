//! Why a measurement could not be computed.

/// Why a measurement could not be computed. Every variant is the input's
/// fault (a firmware, kernel or VM shape that cannot be measured this way);
/// retrying with the same input gives the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// The firmware ends inside a structure.
    #[error("firmware is truncated: {what} needs bytes {offset}..{end}, the file has {len}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Where it starts in the file.
        offset: usize,
        /// Where it ends.
        end: usize,
        /// The file's length.
        len: usize,
    },
    /// The firmware has no OVMF GUID table at its end (not an OVMF/TDVF build).
    #[error(
        "no OVMF footer table: the 16 bytes 48 bytes before the end are not its GUID (is this an OVMF or TDVF image?)"
    )]
    NoFooterTable,
    /// An entry of the footer table is malformed.
    #[error("OVMF footer table entry at offset {offset} is malformed: {why}")]
    BadTableEntry {
        /// Offset of the entry's header in the file.
        offset: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// A table entry the measurement needs is missing.
    #[error("the firmware has no {what} (GUID {guid}); {hint}")]
    MissingEntry {
        /// What the entry is.
        what: &'static str,
        /// Its GUID.
        guid: &'static str,
        /// What it means for the caller.
        hint: &'static str,
    },
    /// A metadata block does not start with its signature or has an unknown version.
    #[error("{what} at offset {offset} is invalid: {why}")]
    BadMetadata {
        /// Which metadata.
        what: &'static str,
        /// Where it is in the file.
        offset: usize,
        /// What is wrong.
        why: String,
    },
    /// A kernel, initrd or command line was given but the firmware cannot measure it.
    #[error(
        "a kernel was given, but this firmware has no SEV-SNP kernel hashes section: QEMU would boot it unmeasured. Use a firmware built with one (OVMF's AmdSev package), or measure without --kernel"
    )]
    NoKernelHashes,
    /// The VM shape is not measurable.
    #[error("invalid VM shape: {0}")]
    Shape(String),
}
