/*
 * tdx_attest.h for Cloister's tests: written from the documented ABI of
 * Intel's libtdx_attest (SGX DCAP, QuoteGeneration/quote_wrapper/tdx_attest),
 * declaring only what attestation/collect/src/tdx_attest.rs binds. Not
 * Intel's file; the real one declares more (tdx_att_get_report,
 * tdx_att_extend, tdx_att_get_supported_att_key_ids).
 */
#ifndef _TDX_ATTEST_H_
#define _TDX_ATTEST_H_

#include <stdint.h>

typedef enum _tdx_attest_error_t {
    TDX_ATTEST_SUCCESS = 0x0000,
    TDX_ATTEST_ERROR_MIN = 0x0001,
    TDX_ATTEST_ERROR_UNEXPECTED = 0x0001,
    TDX_ATTEST_ERROR_INVALID_PARAMETER = 0x0002,
    TDX_ATTEST_ERROR_OUT_OF_MEMORY = 0x0003,
    TDX_ATTEST_ERROR_VSOCK_FAILURE = 0x0004,
    TDX_ATTEST_ERROR_REPORT_FAILURE = 0x0005,
    TDX_ATTEST_ERROR_EXTEND_FAILURE = 0x0006,
    TDX_ATTEST_ERROR_NOT_SUPPORTED = 0x0007,
    TDX_ATTEST_ERROR_QUOTE_FAILURE = 0x0008,
    TDX_ATTEST_ERROR_BUSY = 0x0009,
    TDX_ATTEST_ERROR_DEVICE_FAILURE = 0x000a,
    TDX_ATTEST_ERROR_INVALID_RTMR_INDEX = 0x000b,
    TDX_ATTEST_ERROR_UNSUPPORTED_ATT_KEY_ID = 0x000c,
    TDX_ATTEST_ERROR_MAX = TDX_ATTEST_ERROR_UNSUPPORTED_ATT_KEY_ID,
} tdx_attest_error_t;

#define TDX_REPORT_DATA_SIZE 64

typedef struct _tdx_report_data_t {
    uint8_t d[TDX_REPORT_DATA_SIZE];
} tdx_report_data_t;

typedef struct _tdx_uuid_t {
    uint8_t d[16];
} tdx_uuid_t;

#ifdef __cplusplus
extern "C" {
#endif

tdx_attest_error_t tdx_att_get_quote(
    const tdx_report_data_t *p_tdx_report_data,
    const tdx_uuid_t att_key_id_list[],
    uint32_t list_size,
    tdx_uuid_t *p_att_key_id,
    uint8_t **pp_quote,
    uint32_t *p_quote_size,
    uint32_t flags);

tdx_attest_error_t tdx_att_free_quote(uint8_t *p_quote);

#ifdef __cplusplus
}
#endif

#endif /* _TDX_ATTEST_H_ */
