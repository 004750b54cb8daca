/*
 * fuzz_aws_creds.c - AWS credential sources (launcher/creds.c
 * pl_creds_load): a .env file, ~/.aws/credentials and ~/.aws/config under a
 * scratch home, process environment ignored. Input: .env, FZ_SEP,
 * credentials, FZ_SEP, config, FZ_SEP, profile name (first line, at most 63
 * bytes; empty = "default").
 */
#include "fuzz.h"
#include "plaunch.h"

#include <errno.h>
#include <sys/stat.h>

static char home[300], aws_dir[320];
static fz_file envf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    const char *dir = fz_tmpdir();
    if (!dir) abort();
    snprintf(home, sizeof home, "%s", dir);
    snprintf(aws_dir, sizeof aws_dir, "%s/.aws", dir);
    if (mkdir(aws_dir, 0700) && errno != EEXIST) abort();
    return 0;
}

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[4];
    size_t len[4];
    fz_split(data, size, part, len, 4);
    char profile[64];
    size_t pl = len[3] < sizeof profile - 1 ? len[3] : sizeof profile - 1;
    memcpy(profile, part[3], pl);
    profile[pl] = 0;
    profile[strcspn(profile, "\n")] = 0;
    if (fz_file_set(&envf, "dotenv", part[0], len[0]) ||
        fz_write(aws_dir, "credentials", part[1], len[1]) ||
        fz_write(aws_dir, "config", part[2], len[2]))
        return 0;
    pl_creds_opts o = {.profile = profile[0] ? profile : NULL, .env_file = envf.path,
                       .home = home, .no_environment = 1};
    pl_creds c;
    char err[PT_ERRLEN];
    int rc = pl_creds_load(&c, &o, err);
    if (rc == PT_OK) {
        FZ_CHECK(c.access_key[0] && c.secret_key[0]);
        FZ_CHECK(printable(c.access_key) && printable(c.secret_key) && printable(c.token));
        FZ_CHECK(memchr(c.region, 0, sizeof c.region) && memchr(c.source, 0, sizeof c.source));
    } else {
        FZ_CHECK(rc < 0 && err[0]);
    }
    pl_creds_wipe(&c);
    return 0;
}
