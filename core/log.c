/* log.c - leveled, timestamped logging to stderr and/or a file. */
#include "petal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static pt_log_level log_level = PT_LOG_INFO;
static char log_name[32] = "petal";
static FILE *log_fp;
static int log_to_stderr = 1;

void pt_log_set_level(pt_log_level lvl) { log_level = lvl; }
pt_log_level pt_log_get_level(void) { return log_level; }
void pt_log_set_stderr(int on) { log_to_stderr = on; }

int pt_log_level_parse(const char *s)
{
    if (!s) return -1;
    if (!strcasecmp(s, "debug")) return PT_LOG_DEBUG;
    if (!strcasecmp(s, "info")) return PT_LOG_INFO;
    if (!strcasecmp(s, "warn") || !strcasecmp(s, "warning")) return PT_LOG_WARN;
    if (!strcasecmp(s, "error")) return PT_LOG_ERROR;
    if (!strcasecmp(s, "off") || !strcasecmp(s, "none")) return PT_LOG_OFF;
    return -1;
}

void pt_log_set_name(const char *name)
{
    pthread_mutex_lock(&log_mu);
    snprintf(log_name, sizeof log_name, "%s", name ? name : "petal");
    pthread_mutex_unlock(&log_mu);
}

int pt_log_set_file(const char *path)
{
    int rc = PT_OK;
    pthread_mutex_lock(&log_mu);
    if (log_fp) {
        fclose(log_fp);
        log_fp = NULL;
    }
    if (path) {
        int fd = pt_open_write(path, 1, NULL); /* never waits on a FIFO */
        log_fp = fd >= 0 ? fdopen(fd, "a") : NULL;
        if (!log_fp) {
            if (fd >= 0) close(fd);
            rc = PT_ERR_IO;
        } else {
            setvbuf(log_fp, NULL, _IOLBF, 0);
        }
    }
    pthread_mutex_unlock(&log_mu);
    return rc;
}

void pt_iso8601_now(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
}

static const char *level_name(pt_log_level l)
{
    switch (l) {
    case PT_LOG_DEBUG: return "DEBUG";
    case PT_LOG_INFO: return "INFO";
    case PT_LOG_WARN: return "WARNING";
    case PT_LOG_ERROR: return "ERROR";
    default: return "?";
    }
}

size_t pt_escape_ctrl(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (!dst || cap == 0) return 0;
    for (const unsigned char *p = (const unsigned char *)(src ? src : ""); *p; p++) {
        char e[4];
        size_t k = 1;
        e[0] = (char)*p;
        if (*p < 0x20 || *p == 0x7f) {
            e[0] = '\\';
            k = 2;
            if (*p == '\n') e[1] = 'n';
            else if (*p == '\r') e[1] = 'r';
            else if (*p == '\t') e[1] = 't';
            else {
                e[1] = 'x';
                e[2] = hex[*p >> 4];
                e[3] = hex[*p & 15];
                k = 4;
            }
        }
        if (o + k >= cap) break;
        memcpy(dst + o, e, k);
        o += k;
    }
    dst[o] = '\0';
    return o;
}

void pt_log_vwrite(pt_log_level lvl, const char *file, int line, const char *fmt, va_list ap)
{
    char ts[40], raw[2048], msg[2048];
    const char *base;
    if (lvl < log_level || lvl >= PT_LOG_OFF) return;
    pt_iso8601_now(ts, sizeof ts);
    vsnprintf(raw, sizeof raw, fmt, ap);
    pt_escape_ctrl(msg, sizeof msg, raw);
    base = file ? strrchr(file, '/') : NULL;
    base = base ? base + 1 : (file ? file : "?");
    pthread_mutex_lock(&log_mu);
    if (log_to_stderr)
        fprintf(stderr, "%s %s %s | %s:%d | %s\n", level_name(lvl), log_name, ts, base, line, msg);
    if (log_fp)
        fprintf(log_fp, "%s %s %s | %s:%d | %s\n", level_name(lvl), log_name, ts, base, line, msg);
    pthread_mutex_unlock(&log_mu);
}

void pt_log_write(pt_log_level lvl, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pt_log_vwrite(lvl, file, line, fmt, ap);
    va_end(ap);
}

/* ---- escaping peer text ---------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629) within n bytes,
 * its code point in *cp; 0 if malformed. */
static size_t utf8_seq(const unsigned char *p, size_t n, unsigned *cp)
{
    unsigned c = p[0], lo = 0x80, hi = 0xbf;
    size_t len;
    if (c >= 0xc2 && c <= 0xdf) len = 2, c &= 0x1f;
    else if (c >= 0xe0 && c <= 0xef) len = 3, c &= 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, c &= 0x07;
    else return 0;
    if (p[0] == 0xe0) lo = 0xa0;
    if (p[0] == 0xed) hi = 0x9f; /* no surrogates */
    if (p[0] == 0xf0) lo = 0x90;
    if (p[0] == 0xf4) hi = 0x8f;
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    c = c << 6 | (p[1] & 0x3f);
    for (size_t i = 2; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    *cp = c;
    return len;
}

static int unsafe_cp(unsigned cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029;
}

/* The escaped form of the character at p[0..n) into piece (>= 16 bytes):
 * returns its length, *used the input bytes it stands for. */
static size_t esc_piece(const unsigned char *p, size_t n, char *piece, size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = p[0];
    unsigned cp = 0;
    *used = 1;
    if (c == '\\') return memcpy(piece, "\\\\", 2), 2;
    if (c >= 0x20 && c < 0x7f) return piece[0] = (char)c, 1;
    if (c == '\n') return memcpy(piece, "\\n", 2), 2;
    if (c == '\r') return memcpy(piece, "\\r", 2), 2;
    if (c == '\t') return memcpy(piece, "\\t", 2), 2;
    size_t len = c >= 0x80 ? utf8_seq(p, n, &cp) : 0;
    if (len) {
        *used = len;
        if (unsafe_cp(cp)) return (size_t)snprintf(piece, 16, "\\u{%04x}", cp);
        memcpy(piece, p, len);
        return len;
    }
    piece[0] = '\\', piece[1] = 'x', piece[2] = hex[c >> 4], piece[3] = hex[c & 15];
    return 4;
}

const char *pt_escape(char *out, size_t cap, const void *in, size_t n)
{
    const unsigned char *p = in ? in : (const unsigned char *)"";
    size_t o = 0, i = 0, room;
    char piece[16];
    if (!cap) return out;
    if (n == PT_ESC_CSTR) n = strlen((const char *)p);
    /* room for the text and a NUL; when the whole does not fit, for "..." too */
    size_t total = 0, used;
    for (size_t j = 0; j < n && total < cap; j += used)
        total += esc_piece(p + j, n - j, piece, &used);
    room = total < cap ? cap - 1 : cap >= 4 ? cap - 4 : cap - 1;
    while (i < n) {
        size_t k = esc_piece(p + i, n - i, piece, &used);
        if (o + k > room) break;
        memcpy(out + o, piece, k);
        o += k;
        i += used;
    }
    if (i < n && cap >= 4) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = 0;
    return out;
}
