/*
 * A fake libnvidia-ml for Cloister's tests (never for production).
 *
 * It implements only the NVML entry points the nvml-wrapper crate calls on
 * Cloister's GPU evidence paths. nvml-wrapper resolves every symbol when it
 * loads the library but keeps a missing one as an error for that call only,
 * so nothing else has to exist (nvmlShutdown must: its Drop calls it
 * unconditionally). The declarations below are our own, written from
 * NVIDIA's documented NVML ABI: every struct is plain C with unsigned int
 * fields and fixed-size byte arrays.
 *
 * Tests configure it through fake_nvml_set(key, value) before NVML is
 * initialised (keys below), and read call counters through
 * fake_nvml_calls(name). Each test compiles its own copy into its own
 * directory, so copies loaded in one process share no state.
 *
 * Build with -DFAKE_NVML_NO_CC_SETTINGS to leave out
 * nvmlSystemGetConfComputeSettings (a driver older than R550).
 *
 * A process that cannot call fake_nvml_set (the enclave's own tests load
 * the library only through NVML) builds it with
 * -DFAKE_NVML_REPORT_PATH='"<file>"' -DFAKE_NVML_CHAIN_PATH='"<file>"' and
 * optionally -DFAKE_NVML_GPUS=<n>: nvmlInit_v2 then loads those files
 * unless a report was set already.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- NVML ABI (our declarations) ---------------------------------------- */

typedef int nvml_return;
enum {
    NVML_OK = 0,
    NVML_ERR_UNINITIALIZED = 1,
    NVML_ERR_INVALID_ARGUMENT = 2,
    NVML_ERR_NOT_SUPPORTED = 3,
    NVML_ERR_INSUFFICIENT_SIZE = 7,
    NVML_ERR_ARGUMENT_VERSION_MISMATCH = 25,
};

/* A device handle is an opaque pointer; ours points into `devices`. */
struct fake_device {
    unsigned index;
};
typedef struct fake_device *nvml_device;

/* nvmlConfComputeSystemState_t */
struct cc_system_state {
    unsigned environment; /* 0 unavailable, 1 simulated, 2 production */
    unsigned cc_feature;  /* 0 disabled, 1 enabled */
    unsigned dev_tools_mode; /* 0 off, 1 on */
};

/* nvmlSystemConfComputeSettings_v1_t; `version` = sizeof | (1 << 24) */
struct cc_settings_v1 {
    unsigned version;
    unsigned environment;
    unsigned cc_feature;
    unsigned dev_tools_mode;
    unsigned multi_gpu_mode;
};
#define CC_SETTINGS_V1 ((unsigned)(sizeof(struct cc_settings_v1) | (1u << 24)))

#define CERT_CHAIN_MAX 4096
#define ATTESTATION_CERT_CHAIN_MAX 5120
#define NONCE_LEN 32
#define REPORT_MAX 8192
#define CEC_REPORT_MAX 4096

/* nvmlConfComputeGpuCertificate_t */
struct gpu_certificate {
    unsigned cert_chain_size;
    unsigned attestation_cert_chain_size;
    unsigned char cert_chain[CERT_CHAIN_MAX];
    unsigned char attestation_cert_chain[ATTESTATION_CERT_CHAIN_MAX];
};

/* nvmlConfComputeGpuAttestationReport_t; `nonce` is input */
struct gpu_attestation_report {
    unsigned cec_report_present;
    unsigned report_size;
    unsigned cec_report_size;
    unsigned char nonce[NONCE_LEN];
    unsigned char report[REPORT_MAX];
    unsigned char cec_report[CEC_REPORT_MAX];
};

_Static_assert(sizeof(struct cc_settings_v1) == 20, "settings layout");
_Static_assert(sizeof(struct gpu_certificate) == 8 + 4096 + 5120, "certificate layout");
_Static_assert(sizeof(struct gpu_attestation_report) == 12 + 32 + 8192 + 4096, "report layout");

/* ---- configuration and counters ------------------------------------------ */

#define MAX_GPUS 8

static struct fake_device devices[MAX_GPUS];
static struct {
    unsigned gpus;
    unsigned cc_feature;
    unsigned dev_tools;
    unsigned ready;
    unsigned environment;
    long report_size_override; /* < 0: the real size */
    int report_error;          /* returned by the report call when non-zero */
    unsigned char report[REPORT_MAX];
    unsigned report_len;
    unsigned char chain[ATTESTATION_CERT_CHAIN_MAX];
    unsigned chain_len;
} config = {1, 1, 0, 1, 2, -1, 0, {0}, 0, {0}, 0};

static int initialized;
static unsigned char last_nonce[NONCE_LEN];
static int have_nonce;
static int in_flight;
static unsigned overlaps;

enum {
    C_INIT,
    C_SHUTDOWN,
    C_COUNT,
    C_HANDLE,
    C_UUID,
    C_SETTINGS,
    C_STATE,
    C_READY,
    C_CERTIFICATE,
    C_REPORT,
    C_N
};
static const char *const call_names[C_N] = {
    "nvmlInit_v2",
    "nvmlShutdown",
    "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetHandleByIndex_v2",
    "nvmlDeviceGetUUID",
    "nvmlSystemGetConfComputeSettings",
    "nvmlSystemGetConfComputeState",
    "nvmlSystemGetConfComputeGpusReadyState",
    "nvmlDeviceGetConfComputeGpuCertificate",
    "nvmlDeviceGetConfComputeGpuAttestationReport",
};
static unsigned calls[C_N];

static void count(int which) { __atomic_fetch_add(&calls[which], 1, __ATOMIC_SEQ_CST); }

/* Reads a whole file of at most `max` bytes; -1 if missing or too large. */
static int read_file(const char *path, unsigned char *out, unsigned max, unsigned *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return -1;
    }
    size_t n = fread(out, 1, max, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    if (more) {
        return -1;
    }
    *len = (unsigned)n;
    return 0;
}

static int parse_number(const char *value, long min, long max, long *out) {
    char *end = NULL;
    long n = strtol(value, &end, 10);
    if (!value[0] || *end || n < min || n > max) {
        return -1;
    }
    *out = n;
    return 0;
}

/*
 * Keys: gpus (0..8), cc (0/1), dev_tools (0/1), ready (0/1),
 * environment (0 unavailable, 1 simulated, 2 production), report (file),
 * chain (file), report_size (claimed size, -1: real), report_error (NVML
 * code). Returns 0, or -1 for an unknown key or bad value.
 */
int fake_nvml_set(const char *key, const char *value) {
    long n = 0;
    if (strcmp(key, "report") == 0) {
        return read_file(value, config.report, REPORT_MAX, &config.report_len);
    }
    if (strcmp(key, "chain") == 0) {
        return read_file(value, config.chain, ATTESTATION_CERT_CHAIN_MAX, &config.chain_len);
    }
    if (strcmp(key, "gpus") == 0 && parse_number(value, 0, MAX_GPUS, &n) == 0) {
        config.gpus = (unsigned)n;
    } else if (strcmp(key, "cc") == 0 && parse_number(value, 0, 1, &n) == 0) {
        config.cc_feature = (unsigned)n;
    } else if (strcmp(key, "dev_tools") == 0 && parse_number(value, 0, 1, &n) == 0) {
        config.dev_tools = (unsigned)n;
    } else if (strcmp(key, "ready") == 0 && parse_number(value, 0, 1, &n) == 0) {
        config.ready = (unsigned)n;
    } else if (strcmp(key, "environment") == 0 && parse_number(value, 0, 2, &n) == 0) {
        config.environment = (unsigned)n;
    } else if (strcmp(key, "report_size") == 0 && parse_number(value, -1, 1 << 20, &n) == 0) {
        config.report_size_override = n;
    } else if (strcmp(key, "report_error") == 0 && parse_number(value, 0, 999, &n) == 0) {
        config.report_error = (int)n;
    } else {
        return -1;
    }
    return 0;
}

/* Calls of the named NVML function so far. */
unsigned fake_nvml_calls(const char *name) {
    for (int i = 0; i < C_N; i++) {
        if (strcmp(name, call_names[i]) == 0) {
            return __atomic_load_n(&calls[i], __ATOMIC_SEQ_CST);
        }
    }
    return 0;
}

/* Outstanding nvmlInit_v2 calls (NVML reference-counts them). */
int fake_nvml_initialized(void) { return __atomic_load_n(&initialized, __ATOMIC_SEQ_CST); }

/* Times two report calls ran at once. */
unsigned fake_nvml_overlaps(void) { return __atomic_load_n(&overlaps, __ATOMIC_SEQ_CST); }

/* Copies the last nonce asked for; -1 if none was. */
int fake_nvml_last_nonce(unsigned char out[NONCE_LEN]) {
    if (!have_nonce) {
        return -1;
    }
    memcpy(out, last_nonce, NONCE_LEN);
    return 0;
}

/* ---- NVML entry points ---------------------------------------------------- */

static int ready_to_serve(void) { return __atomic_load_n(&initialized, __ATOMIC_SEQ_CST) > 0; }

static int valid_device(nvml_device device) {
    return device && device >= &devices[0] && device < &devices[config.gpus] &&
           device == &devices[device->index];
}

nvml_return nvmlInit_v2(void) {
    count(C_INIT);
#if defined(FAKE_NVML_REPORT_PATH) && defined(FAKE_NVML_CHAIN_PATH)
    if (config.report_len == 0) {
        if (read_file(FAKE_NVML_REPORT_PATH, config.report, REPORT_MAX, &config.report_len) != 0 ||
            read_file(FAKE_NVML_CHAIN_PATH, config.chain, ATTESTATION_CERT_CHAIN_MAX,
                      &config.chain_len) != 0) {
            return NVML_ERR_UNINITIALIZED;
        }
#ifdef FAKE_NVML_GPUS
        config.gpus = FAKE_NVML_GPUS;
#endif
    }
#endif
    for (unsigned i = 0; i < MAX_GPUS; i++) {
        devices[i].index = i;
    }
    __atomic_fetch_add(&initialized, 1, __ATOMIC_SEQ_CST);
    return NVML_OK;
}

nvml_return nvmlShutdown(void) {
    count(C_SHUTDOWN);
    if (!ready_to_serve()) {
        return NVML_ERR_UNINITIALIZED;
    }
    __atomic_fetch_sub(&initialized, 1, __ATOMIC_SEQ_CST);
    return NVML_OK;
}

nvml_return nvmlDeviceGetCount_v2(unsigned *count_out) {
    count(C_COUNT);
    if (!ready_to_serve()) {
        return NVML_ERR_UNINITIALIZED;
    }
    if (!count_out) {
        return NVML_ERR_INVALID_ARGUMENT;
    }
    *count_out = config.gpus;
    return NVML_OK;
}

nvml_return nvmlDeviceGetHandleByIndex_v2(unsigned index, nvml_device *device) {
    count(C_HANDLE);
    if (!ready_to_serve()) {
        return NVML_ERR_UNINITIALIZED;
    }
    if (!device || index >= config.gpus) {
        return NVML_ERR_INVALID_ARGUMENT;
    }
    *device = &devices[index];
    return NVML_OK;
}

nvml_return nvmlDeviceGetUUID(nvml_device device, char *uuid, unsigned length) {
    count(C_UUID);
    if (!ready_to_serve()) {
        return NVML_ERR_UNINITIALIZED;
    }
    if (!valid_device(device) || !uuid) {
        return NVML_ERR_INVALID_ARGUMENT;
    }
    int n = snprintf(uuid, length, "GPU-fa4e0000-0000-4000-8000-%012u", device->index);
    if (n < 0 || (unsigned)n >= length) {
        return NVML_ERR_INSUFFICIENT_SIZE;
    }
    return NVML_OK;
}

#ifndef FAKE_NVML_NO_CC_SETTINGS
nvml_return nvmlSystemGetConfComputeSettings(struct cc_settings_v1 *settings) {
    count(C_SETTINGS);
    if (!ready_to_serve()) {
        return NVML_ERR_UNINITIALIZED;
    }
    if (!settings) {
        return NVML_ERR_INVALID_ARGUMENT;
    }
    if (settings->version != CC_SETTINGS_V1) {
        return NVML_ERR_ARGUMENT_VERSION_MISMATCH;
    }
    settings->environment = config.environment;
    settings->cc_feature = config.cc_feature;
    settings->dev_tools_mode = config.dev_tools;
    settings->multi_gpu_mode = 0;
    return NVML_OK;
}
#endif

nvml_return nvmlSystemGetConfComputeState(struct cc_system_state *state) {
    count(C_STATE);
    if (!ready_to_serve()) {
        return NVML_ERR_UNINITIALIZED;
    }
    if (!state) {
        return NVML_ERR_INVALID_ARGUMENT;
    }
    state->environment = config.environment;
    state->cc_feature = config.cc_feature;
    state->dev_tools_mode = config.dev_tools;
    return NVML_OK;
}

nvml_return nvmlSystemGetConfComputeGpusReadyState(unsigned *accepting_work) {
    count(C_READY);
    if (!ready_to_serve()) {
        return NVML_ERR_UNINITIALIZED;
    }
    if (!accepting_work) {
        return NVML_ERR_INVALID_ARGUMENT;
    }
    *accepting_work = config.cc_feature ? config.ready : 0;
    return NVML_OK;
}

nvml_return nvmlDeviceGetConfComputeGpuCertificate(nvml_device device,
                                                   struct gpu_certificate *certificate) {
    count(C_CERTIFICATE);
    if (!ready_to_serve()) {
        return NVML_ERR_UNINITIALIZED;
    }
    if (!valid_device(device) || !certificate) {
        return NVML_ERR_INVALID_ARGUMENT;
    }
    if (!config.cc_feature) {
        return NVML_ERR_NOT_SUPPORTED;
    }
    memset(certificate, 0, sizeof(*certificate));
    memcpy(certificate->attestation_cert_chain, config.chain, config.chain_len);
    certificate->attestation_cert_chain_size = config.chain_len;
    return NVML_OK;
}

nvml_return nvmlDeviceGetConfComputeGpuAttestationReport(nvml_device device,
                                                         struct gpu_attestation_report *report) {
    count(C_REPORT);
    if (__atomic_fetch_add(&in_flight, 1, __ATOMIC_SEQ_CST) != 0) {
        __atomic_fetch_add(&overlaps, 1, __ATOMIC_SEQ_CST);
    }
    nvml_return result = NVML_OK;
    if (!ready_to_serve()) {
        result = NVML_ERR_UNINITIALIZED;
    } else if (!valid_device(device) || !report) {
        result = NVML_ERR_INVALID_ARGUMENT;
    } else if (!config.cc_feature) {
        result = NVML_ERR_NOT_SUPPORTED;
    } else if (config.report_error) {
        result = config.report_error;
    } else {
        memcpy(last_nonce, report->nonce, NONCE_LEN);
        have_nonce = 1;
        /* A real GPU takes a while to sign: widen the window for overlaps. */
        struct timespec pause = {0, 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
        /* The stored report answers the nonce it was recorded with: a
         * request for any other nonce gets a stale report back. */
        memcpy(report->report, config.report, config.report_len);
        report->report_size = config.report_size_override >= 0
                                  ? (unsigned)config.report_size_override
                                  : config.report_len;
        report->cec_report_present = 0;
        report->cec_report_size = 0;
    }
    __atomic_fetch_sub(&in_flight, 1, __ATOMIC_SEQ_CST);
    return result;
}
