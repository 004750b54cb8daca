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
