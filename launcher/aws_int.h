/* aws_int.h - launcher-internal request plumbing shared by the service files
 * and the tests (which sign the project's real requests at a fixed time). */
#ifndef PETAL_LAUNCHER_AWS_INT_H
#define PETAL_LAUNCHER_AWS_INT_H

#include "plaunch.h"
#include "xml_int.h"

#define PL_MAX_CALL_HEADERS 8

/* One AWS call. bucket/key are raw (encoded here, path-style). query is the
 * encoded query as sent. headers are extra headers, all signed. */
typedef struct pl_call {
    pl_service svc;
    const char *method;
    const char *bucket;
    const char *key;
    const char *query;
    pl_header headers[PL_MAX_CALL_HEADERS];
    size_t n_headers;
    const void *body;
    size_t body_len;
    int unsigned_payload;
    size_t max_resp;   /* 0: client default */
    int no_retry_codes; /* reserved */
} pl_call;

/* A signed request ready to send. */
typedef struct pl_prepared {
    pl_str url;
    char host[256];
    pl_str header_lines[PL_MAX_CALL_HEADERS + 6]; /* "Name: value" */
    size_t n_lines;
    pl_sigv4_out sig;
} pl_prepared;

/* Details of a failed call (filled by pl_aws_call on PT_ERR_AWS/AUTH/NOTFOUND). */
typedef struct pl_awserr {
    long status;
    char code[96];
    char message[512];
    char request_id[128];
} pl_awserr;

/* Build and sign c at time when. p must be zeroed; free with pl_prepared_free. */
int pl_aws_prepare(pl_aws *a, const pl_call *c, time_t when, pl_prepared *p, char *err);
void pl_prepared_free(pl_prepared *p);
/* Send c (signing each attempt afresh), retrying throttling/5xx/connection
 * errors with backoff. On HTTP >= 300 parses the error body into ae (may be
 * NULL) and returns PT_ERR_AUTH (credential codes), PT_ERR_NOTFOUND (404
 * or *NotFound / NoSuch* codes) or PT_ERR_AWS; err gets a full message. */
int pl_aws_call(pl_aws *a, const pl_call *c, pl_resp *r, pl_awserr *ae, char *err);
/* Parse an AWS error body (XML or JSON) into ae. */
void pl_aws_parse_error(const char *body, size_t n, pl_awserr *ae);
/* The region of the client (borrowed). */
const char *pl_aws_region(const pl_aws *a);
/* EC2 Query call: params is the form body after Action/Version ("" ok). On
 * success *doc is the parsed reply (owned). */
int pl_ec2_call(pl_aws *a, const char *action, const char *params, pl_xml **doc, pl_awserr *ae,
                char *err);
/* Append "&name=UriEncode(value)" to a form body. */
int pl_form_add(pl_str *f, const char *name, const char *value);
/* Override the clock used for signing (tests; 0 restores time()). */
void pl_aws_set_clock(pl_aws *a, time_t fixed);
/* Capture mode (tests): calls are signed and handed to fn instead of being
 * sent; they then fail with PT_ERR_UNSUPPORTED. NULL turns it off. */
typedef void (*pl_capture_fn)(void *ud, const pl_call *c, const pl_prepared *p);
void pl_aws_set_capture(pl_aws *a, pl_capture_fn fn, void *ud);
/* Replace the stop flag (NULL: never interrupted; used during clean-up). */
void pl_aws_set_stop(pl_aws *a, volatile int *stop);
/* Label of a service for messages ("EC2", "S3"...). */
const char *pl_service_name(pl_service s);

#endif
