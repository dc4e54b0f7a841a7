/*
 * A fake libtdx_attest for Cloister's tests (never for production).
 *
 * tdx_att_get_quote returns a quote-shaped buffer:
 *   "FAKE-TDX-QUOTE\0\0" (16) || report data (64) || attestation key id (16)
 * Report data starting with "FAIL" makes it fail with the code in byte 4;
 * report data starting with "NULQ" makes it succeed without a buffer.
 * It checks its arguments like the real library and tracks live buffers, so
 * tests can check every quote is freed exactly once.
 */
#include <stdlib.h>
#include <string.h>

#include "tdx_attest.h"

#define MAX_LIVE 64
static uint8_t *live[MAX_LIVE];
static int outstanding;
static unsigned calls;

static const tdx_uuid_t FAKE_KEY_ID = {{0xe8, 0x6c, 0x04, 0x6e, 0x8c, 0xc4, 0x4d, 0x95,
                                        0x81, 0x73, 0xfc, 0x43, 0xc1, 0xfa, 0x4f, 0x3f}};

int fake_tdx_attest_outstanding(void) { return outstanding; }
unsigned fake_tdx_attest_calls(void) { return calls; }

tdx_attest_error_t tdx_att_get_quote(const tdx_report_data_t *p_tdx_report_data,
                                     const tdx_uuid_t att_key_id_list[], uint32_t list_size,
                                     tdx_uuid_t *p_att_key_id, uint8_t **pp_quote,
                                     uint32_t *p_quote_size, uint32_t flags) {
    calls++;
    if (!p_tdx_report_data || !pp_quote || !p_quote_size || flags != 0 ||
        (list_size != 0 && !att_key_id_list) || (list_size == 0 && att_key_id_list)) {
        return TDX_ATTEST_ERROR_INVALID_PARAMETER;
    }
    const uint8_t *rd = p_tdx_report_data->d;
    if (memcmp(rd, "FAIL", 4) == 0) {
        return (tdx_attest_error_t)rd[4];
    }
    if (p_att_key_id) {
        *p_att_key_id = FAKE_KEY_ID;
    }
    if (memcmp(rd, "NULQ", 4) == 0) {
        *pp_quote = NULL;
        *p_quote_size = 0;
        return TDX_ATTEST_SUCCESS;
    }
    const uint32_t size = 16 + TDX_REPORT_DATA_SIZE + 16;
    uint8_t *quote = malloc(size);
    if (!quote) {
        return TDX_ATTEST_ERROR_OUT_OF_MEMORY;
    }
    memcpy(quote, "FAKE-TDX-QUOTE\0\0", 16);
    memcpy(quote + 16, rd, TDX_REPORT_DATA_SIZE);
    memcpy(quote + 16 + TDX_REPORT_DATA_SIZE, FAKE_KEY_ID.d, 16);
    for (int i = 0; i < MAX_LIVE; i++) {
        if (!live[i]) {
            live[i] = quote;
            outstanding++;
            *pp_quote = quote;
            *p_quote_size = size;
            return TDX_ATTEST_SUCCESS;
        }
    }
    free(quote);
    return TDX_ATTEST_ERROR_OUT_OF_MEMORY;
}

tdx_attest_error_t tdx_att_free_quote(uint8_t *p_quote) {
    if (!p_quote) {
        return TDX_ATTEST_SUCCESS;
    }
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] == p_quote) {
            live[i] = NULL;
            outstanding--;
            free(p_quote);
            return TDX_ATTEST_SUCCESS;
        }
    }
    /* Not ours, or freed twice: the caller is broken. */
    abort();
}
