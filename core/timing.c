/* timing.c - monotonic and wall clocks, interruptible sleep. */
#include "petal.h"

#include <errno.h>
#include <time.h>

uint64_t pt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double pt_now(void) { return (double)pt_now_ns() / 1e9; }

double pt_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void pt_sleep(double seconds, volatile int *stop)
{
    double end = pt_now() + seconds;
    while (!(stop && *stop)) {
        double left = end - pt_now();
        struct timespec ts;
        if (left <= 0) break;
        if (left > 0.1 && stop) left = 0.1; /* poll the stop flag */
        ts.tv_sec = (time_t)left;
        ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL);
    }
}
