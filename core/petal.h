/*
 * petal.h - Petal core: error codes, logging, monotonic timing.
 *
 * Shared by every Petal module except nn/ (which stands alone). Prefix: pt_.
 *
 * Error convention: functions return 0 (PT_OK) on success or a negative
 * pt_err code. Where a detailed message helps, the caller passes a buffer
 * `char err[PT_ERRLEN]` that the callee fills with a human-readable reason.
 * Codes are never renumbered; retired codes stay reserved.
 */
#ifndef PETAL_CORE_H
#define PETAL_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PT_ERRLEN 256

/* ---- errors ---------------------------------------------------------- */
typedef enum pt_err {
    PT_OK = 0,
    PT_ERR_NOMEM = -1,      /* allocation failed */
    PT_ERR_INVAL = -2,      /* invalid argument or option */
    PT_ERR_IO = -3,         /* read/write/open failed (see errno) */
    PT_ERR_FORMAT = -4,     /* malformed input data */
    PT_ERR_RANGE = -5,      /* value out of range / over a limit */
    PT_ERR_NOTFOUND = -6,   /* file, key or resource not found */
    PT_ERR_TIMEOUT = -7,    /* deadline passed */
    PT_ERR_PROTO = -8,      /* protocol violation by a peer */
    PT_ERR_NET = -9,        /* socket / connection failure */
    PT_ERR_TLS = -10,       /* TLS failure */
    PT_ERR_CLOSED = -11,    /* peer closed / stream ended */
    PT_ERR_UNSUPPORTED = -12, /* feature or format not supported */
    PT_ERR_STATE = -13,     /* call not valid in the current state */
    PT_ERR_AUTH = -14,      /* authentication / credentials failure */
    PT_ERR_AWS = -15,       /* AWS service returned an error */
    PT_ERR_INTERRUPTED = -16, /* interrupted by a signal / cancel */
    PT_ERR_NN = -17,        /* error reported by the nn library */
    PT_ERR_MISMATCH = -18,  /* shapes / counts do not match */
    PT_ERR_DIVERGED = -19,  /* non-finite values (NaN/Inf) */
    PT_ERR_BUSY = -20,      /* resource in use (e.g. port) */
    PT_ERR__LAST = -21
} pt_err;

/* Static description of an error code; never NULL. */
const char *pt_strerror(int code);

/* True when retrying the failed operation may succeed (net, timeout, busy). */
int pt_err_is_retryable(int code);

/* Format into a caller error buffer (may be NULL); returns code. */
int pt_seterr(char *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- logging ---------------------------------------------------------- */
typedef enum pt_log_level {
    PT_LOG_DEBUG = 0,
    PT_LOG_INFO = 1,
    PT_LOG_WARN = 2,
    PT_LOG_ERROR = 3,
    PT_LOG_OFF = 4
} pt_log_level;

/* Log line format (Flower-like):
 *   LEVEL name YYYY-MM-DDTHH:MM:SS.mmmZ | file:line | message
 * Defaults: level INFO, destination stderr, name "petal". Thread-safe. */
void pt_log_set_level(pt_log_level lvl);
pt_log_level pt_log_get_level(void);
/* Parse "debug", "info", "warn"/"warning", "error", "off"; -1 if unknown. */
int pt_log_level_parse(const char *s);
void pt_log_set_name(const char *name);
/* Also append to a file (NULL closes it). Returns PT_OK or PT_ERR_IO. */
int pt_log_set_file(const char *path);
/* Send log lines to stderr (default 1) */
void pt_log_set_stderr(int on);
void pt_log_write(pt_log_level lvl, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pt_log_vwrite(pt_log_level lvl, const char *file, int line, const char *fmt, va_list ap);

#define PT_DEBUG(...) pt_log_write(PT_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define PT_INFO(...) pt_log_write(PT_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define PT_WARN(...) pt_log_write(PT_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define PT_ERROR(...) pt_log_write(PT_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

/* Text a peer chose (a status message, grpc-message, a metric key, a header),
 * made safe for a one-line text log: out (cap bytes, NUL-terminated) gets
 * in[0..n) with printable ASCII and well-formed UTF-8 kept, a backslash
 * doubled, newline, CR and tab as \n \r \t, every other control character
 * (C0, DEL, C1), the Unicode bidirectional controls (U+202A-U+202E,
 * U+2066-U+2069) and the line/paragraph separators as \u{XXXX}, and bytes
 * that are not UTF-8 (a NUL included) as \xHH. n = PT_ESC_CSTR reads a
 * NUL-terminated string. A result that does not fit ends with "..." (cap >=
 * 4; smaller caps get what fits). in may be NULL when n is 0 or PT_ESC_CSTR.
 * Returns out, for use as a printf argument. */
#define PT_ESC_CSTR ((size_t)-1)
const char *pt_escape(char *out, size_t cap, const void *in, size_t n);

/* ISO-8601 UTC timestamp with milliseconds into buf (>= 32 bytes). */
void pt_iso8601_now(char *buf, size_t len);

/* Copy src into dst (capacity cap > 0, always NUL-terminated, truncated to
 * fit) with every control character (bytes 0x00-0x1f and 0x7f) written as an
 * escape: \n, \r, \t or \xNN. A log record is then always one line: a file
 * name or peer string holding a newline cannot forge another record. Every
 * log writer (pt_log_*, the results log) passes its messages through this.
 * Returns the length written. */
size_t pt_escape_ctrl(char *dst, size_t cap, const char *src);

/* ---- timing ------------------------------------------------------------ */
/* Monotonic clock in seconds / nanoseconds. */
double pt_now(void);
uint64_t pt_now_ns(void);
/* Wall clock (UNIX epoch) in seconds. */
double pt_wall(void);
/* Sleep, restarting on EINTR unless *stop becomes nonzero (stop may be NULL). */
void pt_sleep(double seconds, volatile int *stop);


/* ---- parameter lists --------------------------------------------------- */
/* An ordered list of float32 tensors (a model's weights in Keras order: each
 * layer's kernel, then its bias). All tensors live in one contiguous buffer
 * `buf` of `total` floats owned by the list, so aggregation can treat the
 * whole model as one flat array; t[i].data points into buf. */
#define PT_MAX_DIMS 8
typedef struct pt_tensor {
    int ndim;
    int64_t shape[PT_MAX_DIMS];
    size_t numel;
    float *data; /* borrowed: points into the owning pt_params' buf */
} pt_tensor;

typedef struct pt_params {
    size_t n;      /* number of tensors */
    pt_tensor *t;  /* n tensors */
    size_t total;  /* total floats */
    float *buf;    /* total floats, owned */
} pt_params;

/* Allocate n tensors with the given ranks and shapes (shapes[i] has ndims[i]
 * entries), zero-filled. The list must be empty (zeroed). Returns PT_OK,
 * PT_ERR_INVAL (bad rank/negative dim) or PT_ERR_NOMEM. */
int pt_params_init(pt_params *p, size_t n, const int *ndims, const int64_t *const *shapes);
/* Allocate a zero-filled list with the same shapes as src. */
int pt_params_init_like(pt_params *p, const pt_params *src);
/* Deep copy (allocates dst; dst must be empty). */
int pt_params_copy(pt_params *dst, const pt_params *src);
/* Copy values from src into dst, which must have the same shapes. */
int pt_params_assign(pt_params *dst, const pt_params *src);
/* 1 if both have the same tensor count and shapes. */
int pt_params_same_shape(const pt_params *a, const pt_params *b);
/* 1 if every value is finite. */
int pt_params_all_finite(const pt_params *p);
/* Free storage and zero the struct (NULL-safe, idempotent). */
void pt_params_free(pt_params *p);

/* ---- a user's files ------------------------------------------------------ */
/* Every path a user names (options, dataset files, outputs) is opened through
 * these: they never block on a FIFO (a FIFO named as input waits forever for a
 * writer with plain open/fopen) and refuse anything but a regular file, saying
 * what it is ("a FIFO", "a directory", "a character device", ...). */

/* What st_mode is, for messages: "a regular file", "a FIFO", ... */
const char *pt_file_kind(unsigned mode);
/* Open an existing regular file for reading (O_CLOEXEC). Returns a file
 * descriptor >= 0, or a negative pt_err with err: "PATH: why". */
int pt_open_read(const char *path, char *err);
/* Open a regular file for writing, created (mode 0644) if absent, truncated
 * (or appended to with append = 1); an existing non-regular file is refused
 * without opening it for writing. Returns an fd >= 0 or a negative pt_err. */
int pt_open_write(const char *path, int append, char *err);
/* The same as stdio streams ("rb" / "wb"); NULL with err set on failure. */
FILE *pt_fopen_read(const char *path, char *err);
FILE *pt_fopen_write(const char *path, char *err);

/* Check a path option before any work, so that a mistake fails in a second
 * with the option's name rather than hours later (or never):
 *   PT_PATH_IN       an existing regular file
 *   PT_PATH_IN_DIR   an existing directory
 *   PT_PATH_IN_ANY   an existing regular file or directory
 *   PT_PATH_OUT      a regular file or nothing yet, in a directory where a file
 *                    can be created (tried: a temporary file is made and removed)
 *   PT_PATH_OUT_DIR  a directory or nothing yet; created (with parents) and
 *                    tried like PT_PATH_OUT
 * Returns PT_OK or PT_ERR_INVAL / PT_ERR_NOTFOUND / PT_ERR_IO with err:
 * "OPT PATH: why". */
enum { PT_PATH_IN = 1, PT_PATH_IN_DIR, PT_PATH_IN_ANY, PT_PATH_OUT, PT_PATH_OUT_DIR };
int pt_check_path(const char *opt, const char *path, int kind, char *err);

/* ---- JSON ------------------------------------------------------------------- */
/* One rule for a key repeated in a JSON object, wherever Petal reads JSON
 * (event logs, AWS replies, run state; the nn library applies the same rule
 * to model files): the text is refused. Python's json module and Keras keep
 * the last value, cJSON's lookups the first; rather than silently read a
 * different value than the tool that wrote the file, Petal reads neither. */
struct cJSON;
/* The first key that appears twice in one object of the tree (borrowed from
 * it), or NULL. */
const char *pt_json_repeated_key(const struct cJSON *o);
/* cJSON_ParseWithLength, refusing repeated keys: NULL with err set ("not
 * valid JSON" / "the key 'K' appears twice in one object"). Free with
 * cJSON_Delete. */
struct cJSON *pt_json_parse(const char *s, size_t n, char *err);

/* ---- config / metrics maps ---------------------------------------------- */
/* Flower's map<string, Scalar> (fit/evaluate config, metrics, properties).
 * Keys are unique (set replaces); insertion order is kept (iterate e[0..n)).
 * Strings and bytes are copied and owned by the map. Every set and get is
 * O(1) expected (a hash index over e, keyed per process: peers cannot
 * choose colliding keys), so a map of n entries costs O(n) to build. The map
 * itself caps nothing: who decodes peer input bounds the entry count and key
 * length (net/pnet.h pnet_decode_limits). */
typedef enum pt_scalar_type {
    PT_SCALAR_DOUBLE = 1,
    PT_SCALAR_SINT64 = 2,
    PT_SCALAR_BOOL = 3,
    PT_SCALAR_STRING = 4,
    PT_SCALAR_BYTES = 5,
    PT_SCALAR_UINT64 = 6 /* Flower >= 1.12 for ints above INT64_MAX */
} pt_scalar_type;

typedef struct pt_scalar {
    pt_scalar_type type;
    union {
        double d;
        int64_t i;
        uint64_t u;
        int b;
        struct {
            char *ptr; /* NUL-terminated for strings (bytes also get a NUL) */
            size_t len;
        } s;
    } v;
} pt_scalar;

/* The longest map key any Petal reader accepts (checkpoints hold metric
 * histories by key); decoders of peer input cap keys at or below it. */
#define PT_CONFIG_KEY_MAX 4096

typedef struct pt_config_entry {
    char *key;     /* NUL-terminated copy; may hold NUL bytes itself (keylen) */
    pt_scalar val;
    size_t keylen; /* key bytes: keys are compared by length and bytes, so a wire
                      key "batch_size\0junk" is not "batch_size" */
} pt_config_entry;

typedef struct pt_config {
    size_t n, cap;
    pt_config_entry *e;
    uint32_t *slot; /* internal: hash index (entry + 1, 0 = free); NULL while small */
    size_t nslot;
} pt_config;

/* A zeroed pt_config is a valid empty map. All setters return PT_OK or PT_ERR_NOMEM. */
int pt_config_set_double(pt_config *c, const char *key, double v);
int pt_config_set_int(pt_config *c, const char *key, int64_t v);
int pt_config_set_uint(pt_config *c, const char *key, uint64_t v);
int pt_config_set_bool(pt_config *c, const char *key, int v);
int pt_config_set_string(pt_config *c, const char *key, const char *v);
int pt_config_set_bytes(pt_config *c, const char *key, const void *v, size_t len);
/* Set a copy of a scalar. */
int pt_config_set(pt_config *c, const char *key, const pt_scalar *v);
/* Same with a key of keylen bytes that may contain NUL bytes (from the wire). */
int pt_config_set_len(pt_config *c, const char *key, size_t keylen, const pt_scalar *v);
/* Borrowed pointer (valid until the map changes) or NULL. */
const pt_scalar *pt_config_get(const pt_config *c, const char *key);
const pt_scalar *pt_config_get_len(const pt_config *c, const char *key, size_t keylen);
/* Numeric lookup: double, sint64, uint64 and bool convert; returns PT_OK,
 * PT_ERR_NOTFOUND (key absent) or PT_ERR_FORMAT (not numeric). */
int pt_config_get_number(const pt_config *c, const char *key, double *out);
/* Convenience: the number, or def when absent or not numeric. */
double pt_config_number_or(const pt_config *c, const char *key, double def);
int pt_config_copy(pt_config *dst, const pt_config *src);
void pt_config_free(pt_config *c);
/* Render as a Python-dict-like string, e.g. {'lr': 0.001, 'epochs': 1} (as Flower logs). */
int pt_config_format(const pt_config *c, char *buf, size_t len);

/* ---- system stats (core/sysstat.c) ---------------------------------------- */
/* CPU utilisation over an interval, as psutil reports it: mark a sample at the
 * start, then pt_cpu_since() at the end.
 *  - process %: CPU time of this process (all threads, user + system) over
 *    the wall time, x100; may exceed 100 with several busy threads
 *    (psutil.Process.cpu_percent);
 *  - system %: busy share of all CPUs from /proc/stat (psutil.cpu_percent:
 *    busy = total - idle - iowait; guest time is already in user), 0..100. */
typedef struct pt_cpu_sample {
    double wall;          /* monotonic seconds */
    double proc_cpu;      /* process CPU seconds (CLOCK_PROCESS_CPUTIME_ID) */
    uint64_t sys_busy;    /* /proc/stat ticks, 0 when unreadable */
    uint64_t sys_total;
} pt_cpu_sample;
/* Fill s with the current counters. Returns PT_OK, or PT_ERR_IO when
 * /proc/stat is unreadable (the process part is still valid). */
int pt_cpu_mark(pt_cpu_sample *s);
/* Percentages since s (either out pointer may be NULL). An interval too short
 * to measure gives 0; an unreadable /proc/stat gives NAN for sys_pct.
 * Returns PT_OK or PT_ERR_IO (system part unavailable). */
int pt_cpu_since(const pt_cpu_sample *s, double *proc_pct, double *sys_pct);
/* Peak resident set size of this process in bytes (VmHWM, else getrusage's
 * ru_maxrss; at least the current RSS); -1 on failure. */
int64_t pt_peak_rss_bytes(void);
/* Current resident set size in bytes (/proc/self/statm); -1 on failure. */
int64_t pt_rss_bytes(void);
/* Online CPUs (>= 1). */
int pt_cpu_count(void);

#ifdef __cplusplus
}
#endif
#endif /* PETAL_CORE_H */
