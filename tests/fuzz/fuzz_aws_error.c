/*
 * fuzz_aws_error.c - AWS error bodies, XML (EC2, S3, STS) or JSON (SSM,
 * x-amz-json): launcher/aws.c pl_aws_parse_error. The output fields must be
 * NUL-terminated within their arrays.
 */
#include "aws_int.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pl_awserr ae;
    memset(&ae, 0, sizeof ae);
    pl_aws_parse_error((const char *)data, size, &ae);
    FZ_CHECK(memchr(ae.code, 0, sizeof ae.code) && memchr(ae.message, 0, sizeof ae.message));
    FZ_CHECK(memchr(ae.request_id, 0, sizeof ae.request_id));
    return 0;
}
