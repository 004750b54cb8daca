/* err.c - Petal error codes. */
#include "petal.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const msgs[] = {
    [0] = "success",
    [1] = "out of memory",
    [2] = "invalid argument",
    [3] = "I/O error",
    [4] = "malformed data",
    [5] = "value out of range",
    [6] = "not found",
    [7] = "timed out",
    [8] = "protocol error",
    [9] = "network error",
    [10] = "TLS error",
    [11] = "connection closed",
    [12] = "not supported",
    [13] = "invalid state",
    [14] = "authentication failed",
    [15] = "AWS error",
    [16] = "interrupted",
    [17] = "neural network library error",
    [18] = "shape or count mismatch",
    [19] = "non-finite values",
    [20] = "resource busy",
};

const char *pt_strerror(int code)
{
    int i = -code;
    if (i < 0 || i >= (int)(sizeof msgs / sizeof msgs[0]) || !msgs[i])
        return "unknown error";
    return msgs[i];
}

int pt_err_is_retryable(int code)
{
    return code == PT_ERR_NET || code == PT_ERR_TIMEOUT || code == PT_ERR_BUSY ||
           code == PT_ERR_CLOSED;
}

int pt_seterr(char *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, PT_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return code;
}
