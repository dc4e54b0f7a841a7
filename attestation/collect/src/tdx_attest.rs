//! TDX quotes through Intel's `libtdx_attest` (feature `tdx-attest-lib`), for
//! kernels without configfs-tsm. The only module with `unsafe` code: two FFI
//! calls and a slice over the library's buffer, each with its reasoning.
//!
//! Bindings come from bindgen over `tdx_attest.h` at build time (see
//! `build.rs`).

use std::sync::Mutex;

use crate::blame::Blame;

#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unreachable_pub,
    missing_debug_implementations,
    unused_qualifications,
    clippy::all,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/tdx_attest_bindings.rs"));
}

/// `libtdx_attest` keeps per-process state (the device or vsock
/// connection); calls are serialised so it never sees two at once.
static LIBRARY: Mutex<()> = Mutex::new(());

/// Errors `tdx_att_get_quote` returns (`tdx_attest_error_t`), plus what the
/// safe wrapper itself checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TdxAttestError {
    /// `TDX_ATTEST_ERROR_UNEXPECTED` (1).
    #[error("libtdx_attest: unexpected error")]
    Unexpected,
    /// `TDX_ATTEST_ERROR_INVALID_PARAMETER` (2).
    #[error("libtdx_attest: invalid parameter")]
    InvalidParameter,
    /// `TDX_ATTEST_ERROR_OUT_OF_MEMORY` (3).
    #[error("libtdx_attest: out of memory")]
    OutOfMemory,
    /// `TDX_ATTEST_ERROR_VSOCK_FAILURE` (4): the quote generation service
    /// could not be reached over vsock.
    #[error("libtdx_attest: cannot reach the host's quote generation service over vsock")]
    VsockFailure,
    /// `TDX_ATTEST_ERROR_REPORT_FAILURE` (5): the TDX module refused TDREPORT.
    #[error("libtdx_attest: getting the TD report failed")]
    ReportFailure,
    /// `TDX_ATTEST_ERROR_EXTEND_FAILURE` (6).
    #[error("libtdx_attest: RTMR extend failed")]
    ExtendFailure,
    /// `TDX_ATTEST_ERROR_NOT_SUPPORTED` (7).
    #[error("libtdx_attest: not supported on this platform")]
    NotSupported,
    /// `TDX_ATTEST_ERROR_QUOTE_FAILURE` (8): the quoting enclave failed.
    #[error("libtdx_attest: the quoting service failed to produce a quote")]
    QuoteFailure,
    /// `TDX_ATTEST_ERROR_BUSY` (9): retry later.
    #[error("libtdx_attest: the TDX guest device is busy")]
    Busy,
    /// `TDX_ATTEST_ERROR_DEVICE_FAILURE` (10): `/dev/tdx_guest` is missing or failed.
    #[error("libtdx_attest: /dev/tdx_guest failed or is missing")]
    DeviceFailure,
    /// `TDX_ATTEST_ERROR_INVALID_RTMR_INDEX` (11).
    #[error("libtdx_attest: invalid RTMR index")]
    InvalidRtmrIndex,
    /// `TDX_ATTEST_ERROR_UNSUPPORTED_ATT_KEY_ID` (12).
    #[error("libtdx_attest: unsupported attestation key id")]
    UnsupportedAttKeyId,
    /// A code this crate does not know.
    #[error("libtdx_attest: error code {0:#x}")]
    Unknown(u32),
    /// Success, but no quote buffer.
    #[error("libtdx_attest returned success without a quote")]
    EmptyQuote,
}

impl TdxAttestError {
    /// Maps a library return code; `None` for `TDX_ATTEST_SUCCESS`.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => return None,
            1 => Self::Unexpected,
            2 => Self::InvalidParameter,
            3 => Self::OutOfMemory,
            4 => Self::VsockFailure,
            5 => Self::ReportFailure,
            6 => Self::ExtendFailure,
            7 => Self::NotSupported,
            8 => Self::QuoteFailure,
            9 => Self::Busy,
            10 => Self::DeviceFailure,
            11 => Self::InvalidRtmrIndex,
            12 => Self::UnsupportedAttKeyId,
            other => Self::Unknown(other),
        })
    }

    /// Who has to act.
    pub fn blame(&self) -> Blame {
        match self {
            Self::InvalidParameter | Self::InvalidRtmrIndex | Self::UnsupportedAttKeyId => {
                Blame::Caller
            }
            Self::OutOfMemory => Blame::Local,
            _ => Blame::Platform,
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Busy | Self::VsockFailure | Self::QuoteFailure | Self::OutOfMemory
        )
    }
}

/// A quote from the library.
#[derive(Clone, PartialEq, Eq)]
pub struct TdxAttestQuote {
    /// The DCAP quote as the library returned it.
    pub quote: Vec<u8>,
    /// The attestation key id the library chose.
    pub att_key_id: [u8; 16],
}

impl std::fmt::Debug for TdxAttestQuote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdxAttestQuote")
            .field("quote_len", &self.quote.len())
            .field("att_key_id", &hex::encode(self.att_key_id))
            .finish()
    }
}

/// Frees the library's quote buffer when dropped.
struct QuoteBuffer(*mut u8);

impl Drop for QuoteBuffer {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a `tdx_att_get_quote` call and is
            // freed exactly once, here; nothing borrows it after drop.
            let code = unsafe { ffi::tdx_att_free_quote(self.0) };
            if code != 0 {
                tracing::warn!(code, "tdx_att_free_quote failed");
            }
        }
    }
}

/// Gets a TDX quote binding `report_data` from `libtdx_attest`, with the
/// library's default attestation key.
pub fn get_quote(report_data: &[u8; 64]) -> Result<TdxAttestQuote, TdxAttestError> {
    let _serial = LIBRARY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let report = ffi::tdx_report_data_t { d: *report_data };
    let mut att_key_id = ffi::tdx_uuid_t { d: [0; 16] };
    let mut quote_ptr: *mut u8 = std::ptr::null_mut();
    let mut quote_size: u32 = 0;
    // SAFETY: every pointer is to a live local of the declared type;
    // `att_key_id_list` may be NULL with `list_size` 0 (the library then
    // picks its default key); the library writes only through the out
    // pointers and keeps none of them after returning.
    let code = unsafe {
        ffi::tdx_att_get_quote(
            &report,
            std::ptr::null(),
            0,
            &mut att_key_id,
            &mut quote_ptr,
            &mut quote_size,
            0,
        )
    };
    // Own the buffer before looking at the code, so it is freed on every path.
    let buffer = QuoteBuffer(quote_ptr);
    if let Some(error) = TdxAttestError::from_code(code) {
        return Err(error);
    }
    let len = usize::try_from(quote_size).unwrap_or(0);
    if buffer.0.is_null() || len == 0 {
        return Err(TdxAttestError::EmptyQuote);
    }
    // SAFETY: on success the library returns a buffer of `quote_size`
    // initialised bytes at `quote_ptr`, valid until `tdx_att_free_quote`,
    // which only `buffer`'s drop calls, after this copy.
    let quote = unsafe { std::slice::from_raw_parts(buffer.0, len) }.to_vec();
    drop(buffer);
    tracing::debug!(quote_len = quote.len(), "collected libtdx_attest quote");
    Ok(TdxAttestQuote {
        quote,
        att_key_id: att_key_id.d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_variants() {
        assert_eq!(TdxAttestError::from_code(0), None);
        assert_eq!(TdxAttestError::from_code(9), Some(TdxAttestError::Busy));
        assert_eq!(
            TdxAttestError::from_code(12),
            Some(TdxAttestError::UnsupportedAttKeyId)
        );
        assert_eq!(
            TdxAttestError::from_code(0x55),
            Some(TdxAttestError::Unknown(0x55))
        );
        assert!(TdxAttestError::Busy.is_retryable());
        assert!(!TdxAttestError::InvalidParameter.is_retryable());
    }
}
