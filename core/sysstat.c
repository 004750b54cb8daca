/* sysstat.c - CPU utilisation and memory of this process and the machine (see petal.h). */
#include "petal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The aggregate "cpu" line of /proc/stat: user nice system idle iowait irq
 * softirq steal guest guest_nice. psutil: total = sum of all minus guest and
 * guest_nice (already counted in user/nice); busy = total - idle - iowait. */
static int read_proc_stat(uint64_t *busy, uint64_t *total)
{
    FILE *f = fopen("/proc/stat", "r");
    char line[512];
    unsigned long long v[10] = {0};
    int n;
    if (!f) return PT_ERR_IO;
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return PT_ERR_IO;
    }
    fclose(f);
    if (strncmp(line, "cpu ", 4) != 0) return PT_ERR_FORMAT;
    n = sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    if (n < 4) return PT_ERR_FORMAT;
    uint64_t sum = 0;
    for (int i = 0; i < n && i < 8; i++) sum += v[i];
    *total = sum;
    *busy = sum - v[3] - (n > 4 ? v[4] : 0);
    return PT_OK;
}

static double proc_cpu_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int pt_cpu_mark(pt_cpu_sample *s)
{
    if (!s) return PT_ERR_INVAL;
    s->wall = pt_now();
    s->proc_cpu = proc_cpu_seconds();
    if (read_proc_stat(&s->sys_busy, &s->sys_total) != PT_OK) {
        s->sys_busy = s->sys_total = 0;
        return PT_ERR_IO;
    }
    return PT_OK;
}

int pt_cpu_since(const pt_cpu_sample *s, double *proc_pct, double *sys_pct)
{
    pt_cpu_sample now;
    int rc;
    if (!s) return PT_ERR_INVAL;
    rc = pt_cpu_mark(&now);
    if (proc_pct) {
        double dt = now.wall - s->wall;
        *proc_pct = dt > 1e-6 ? (now.proc_cpu - s->proc_cpu) / dt * 100.0 : 0.0;
        if (*proc_pct < 0) *proc_pct = 0;
    }
    if (rc != PT_OK || s->sys_total == 0) {
        if (sys_pct) *sys_pct = NAN;
        return PT_ERR_IO;
    }
    if (sys_pct) {
        uint64_t dtot = now.sys_total > s->sys_total ? now.sys_total - s->sys_total : 0;
        uint64_t dbusy = now.sys_busy > s->sys_busy ? now.sys_busy - s->sys_busy : 0;
        *sys_pct = dtot ? (double)dbusy / (double)dtot * 100.0 : 0.0;
        if (*sys_pct > 100.0) *sys_pct = 100.0;
    }
    return PT_OK;
}

int64_t pt_peak_rss_bytes(void)
{
    /* VmHWM (kB) from /proc/self/status, else getrusage's ru_maxrss (KiB);
     * both are updated lazily by the kernel, so never report less than the
     * current RSS. */
    int64_t peak = -1, now = pt_rss_bytes();
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) {
                peak = (int64_t)kb * 1024;
                break;
            }
        fclose(f);
    }
    if (peak < 0) {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) peak = (int64_t)ru.ru_maxrss * 1024;
    }
    return peak > now ? peak : now;
}

int64_t pt_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size, res;
    int n;
    if (!f) return -1;
    n = fscanf(f, "%llu %llu", &size, &res);
    fclose(f);
    if (n != 2) return -1;
    long page = sysconf(_SC_PAGESIZE);
    return (int64_t)res * (page > 0 ? page : 4096);
}

int pt_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
