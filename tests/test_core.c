/* test_core.c - core plumbing: errors, logging, timing. */
#include "petal.h"
#include "test.h"

#include <unistd.h>

static void t_strerror(void)
{
    ASSERT_STR_EQ(pt_strerror(PT_OK), "success");
    ASSERT_STR_EQ(pt_strerror(PT_ERR_NOMEM), "out of memory");
    ASSERT_STR_EQ(pt_strerror(PT_ERR_TIMEOUT), "timed out");
    ASSERT_STR_EQ(pt_strerror(12345), "unknown error");
    ASSERT_STR_EQ(pt_strerror(PT_ERR__LAST), "unknown error");
    for (int c = 0; c > PT_ERR__LAST; c--) ASSERT(strcmp(pt_strerror(c), "unknown error") != 0);
    ASSERT(pt_err_is_retryable(PT_ERR_NET));
    ASSERT(!pt_err_is_retryable(PT_ERR_FORMAT));
}

static void t_seterr(void)
{
    char err[PT_ERRLEN];
    ASSERT_EQ_INT(pt_seterr(err, PT_ERR_FORMAT, "bad %s at %d", "magic", 7), PT_ERR_FORMAT);
    ASSERT_STR_EQ(err, "bad magic at 7");
    ASSERT_EQ_INT(pt_seterr(NULL, PT_ERR_IO, "x"), PT_ERR_IO);
}

static void t_log_file(void)
{
    char path[] = "/tmp/petal_test_log_XXXXXX", line[512];
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT_OK(pt_log_set_file(path));
    pt_log_set_stderr(0);
    pt_log_set_level(PT_LOG_INFO);
    PT_DEBUG("hidden %d", 1);
    PT_INFO("hello %d", 42);
    PT_WARN("careful");
    /* a name with a newline cannot forge a second record */
    PT_WARN("skipping %s", "evil.png\nINFO petal 2026-01-01T00:00:00.000Z | x.c:1 | forged");
    pt_log_set_file(NULL);
    pt_log_set_stderr(1);
    FILE *f = fopen(path, "r");
    ASSERT(f);
    ASSERT(fgets(line, sizeof line, f));
    ASSERT_CONTAINS(line, "INFO petal ");
    ASSERT_CONTAINS(line, "| test_core.c:");
    ASSERT_CONTAINS(line, "| hello 42");
    /* ISO-8601 timestamp: 2026-11-28T20:45:41.123Z */
    ASSERT(line[15] == '-' && line[18] == '-' && line[21] == 'T' && line[34] == 'Z');
    ASSERT(fgets(line, sizeof line, f));
    ASSERT_CONTAINS(line, "WARNING petal");
    ASSERT(fgets(line, sizeof line, f));
    ASSERT_CONTAINS(line, "| skipping evil.png\\nINFO petal 2026");
    ASSERT(!fgets(line, sizeof line, f));
    fclose(f);
    unlink(path);
    ASSERT_EQ_INT(pt_log_set_file("/nonexistent-dir/x.log"), PT_ERR_IO);
    ASSERT_EQ_INT(pt_log_level_parse("Warning"), PT_LOG_WARN);
    ASSERT_EQ_INT(pt_log_level_parse("loud"), -1);
}

static void t_escape_ctrl(void)
{
    char b[64];
    ASSERT_EQ_INT(pt_escape_ctrl(b, sizeof b, "a\nb\rc\td\x01" "e\x7f\xc3\xa9\\"), 22);
    ASSERT_STR_EQ(b, "a\\nb\\rc\\td\\x01e\\x7f\xc3\xa9\\");
    /* truncation never splits an escape */
    ASSERT_EQ_INT(pt_escape_ctrl(b, 4, "ab\n"), 2);
    ASSERT_STR_EQ(b, "ab");
    ASSERT_EQ_INT(pt_escape_ctrl(b, sizeof b, NULL), 0);
}

static void t_timing(void)
{
    double t0 = pt_now();
    uint64_t n0 = pt_now_ns();
    pt_sleep(0.02, NULL);
    double dt = pt_now() - t0;
    ASSERT(dt >= 0.019 && dt < 1.0);
    ASSERT(pt_now_ns() > n0);
    ASSERT(pt_wall() > 1.7e9);
    volatile int stop = 1;
    t0 = pt_now();
    pt_sleep(5, &stop);
    ASSERT(pt_now() - t0 < 0.5);
}

static void t_params(void)
{
    pt_params p, q, r;
    const int64_t s0[] = {3, 3, 1, 2}, s1[] = {2};
    const int64_t *shapes[] = {s0, s1};
    const int nd[] = {4, 1};
    ASSERT_OK(pt_params_init(&p, 2, nd, shapes));
    ASSERT_EQ_INT(p.total, 20);
    ASSERT_EQ_INT(p.t[0].numel, 18);
    ASSERT(p.t[1].data == p.buf + 18);
    for (size_t i = 0; i < p.total; i++) ASSERT(p.buf[i] == 0.0f);
    p.t[1].data[1] = 5.0f;
    ASSERT_OK(pt_params_copy(&q, &p));
    ASSERT(q.buf != p.buf);
    ASSERT(q.t[1].data[1] == 5.0f);
    ASSERT(pt_params_same_shape(&p, &q));
    ASSERT(pt_params_all_finite(&q));
    q.buf[0] = NAN;
    ASSERT(!pt_params_all_finite(&q));
    ASSERT_OK(pt_params_assign(&q, &p));
    ASSERT(pt_params_all_finite(&q));
    ASSERT_OK(pt_params_init(&r, 1, nd, shapes));
    ASSERT(!pt_params_same_shape(&p, &r));
    ASSERT_EQ_INT(pt_params_assign(&r, &p), PT_ERR_MISMATCH);
    pt_params_free(&r);
    const int bad_nd[] = {9};
    ASSERT_EQ_INT(pt_params_init(&r, 1, bad_nd, shapes), PT_ERR_INVAL);
    const int64_t neg[] = {-1};
    const int64_t *nshapes[] = {neg};
    const int one[] = {1};
    ASSERT_EQ_INT(pt_params_init(&r, 1, one, nshapes), PT_ERR_INVAL);
    pt_params_free(&p);
    pt_params_free(&q);
    pt_params_free(&q); /* idempotent */
}

static void t_config(void)
{
    pt_config c = {0}, d;
    char buf[256];
    double x;
    ASSERT_OK(pt_config_set_double(&c, "lr", 0.001));
    ASSERT_OK(pt_config_set_int(&c, "epochs", 2));
    ASSERT_OK(pt_config_set_bool(&c, "flag", 1));
    ASSERT_OK(pt_config_set_string(&c, "name", "fedavg"));
    ASSERT_OK(pt_config_set_bytes(&c, "raw", "\0\1\2", 3));
    ASSERT_OK(pt_config_set_int(&c, "epochs", 3)); /* replaces */
    ASSERT_EQ_INT(c.n, 5);
    ASSERT_EQ_INT(pt_config_get(&c, "epochs")->v.i, 3);
    ASSERT_EQ_INT(pt_config_get(&c, "raw")->v.s.len, 3);
    ASSERT(pt_config_get(&c, "missing") == NULL);
    ASSERT_OK(pt_config_get_number(&c, "epochs", &x));
    ASSERT(x == 3.0);
    ASSERT_EQ_INT(pt_config_get_number(&c, "name", &x), PT_ERR_FORMAT);
    ASSERT_EQ_INT(pt_config_get_number(&c, "nope", &x), PT_ERR_NOTFOUND);
    ASSERT(pt_config_number_or(&c, "nope", 7.5) == 7.5);
    ASSERT_OK(pt_config_copy(&d, &c));
    ASSERT_STR_EQ(pt_config_get(&d, "name")->v.s.ptr, "fedavg");
    ASSERT(pt_config_get(&d, "name")->v.s.ptr != pt_config_get(&c, "name")->v.s.ptr);
    ASSERT_OK(pt_config_format(&d, buf, sizeof buf));
    ASSERT_STR_EQ(buf, "{'lr': 0.001, 'epochs': 3, 'flag': True, 'name': 'fedavg', 'raw': b'<3 bytes>'}");
    ASSERT_EQ_INT(pt_config_format(&d, buf, 10), PT_ERR_RANGE);
    pt_config_free(&c);
    pt_config_free(&d);
    pt_config_free(&d);
}

/* Many keys: order kept, replace, lookups hit and miss, copies; keys that
 * share long prefixes or differ only in the last byte, the empty key. */
static void t_config_many(void)
{
    enum { N = 50000 };
    pt_config c = {0}, d;
    char k[64];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "a-long-common-prefix-of-forty-bytes-xxxxx%d", i);
        ASSERT_OK(pt_config_set_int(&c, k, i));
    }
    ASSERT_OK(pt_config_set_int(&c, "", -1));
    ASSERT_EQ_INT(c.n, N + 1);
    for (int i = 0; i < N; i += 7) { /* replace keeps the place */
        snprintf(k, sizeof k, "a-long-common-prefix-of-forty-bytes-xxxxx%d", i);
        ASSERT_OK(pt_config_set_double(&c, k, i + 0.5));
    }
    ASSERT_EQ_INT(c.n, N + 1);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "a-long-common-prefix-of-forty-bytes-xxxxx%d", i);
        const pt_scalar *v = pt_config_get(&c, k);
        ASSERT_MSG(v != NULL, "key %d lost", i);
        ASSERT_STR_EQ(c.e[i].key, k);
        if (i % 7 == 0) ASSERT(v->type == PT_SCALAR_DOUBLE && v->v.d == i + 0.5);
        else ASSERT(v->type == PT_SCALAR_SINT64 && v->v.i == i);
        snprintf(k, sizeof k, "a-long-common-prefix-of-forty-bytes-xxxxx%d-", i);
        ASSERT(pt_config_get(&c, k) == NULL);
    }
    ASSERT_EQ_INT(pt_config_get(&c, "")->v.i, -1);
    ASSERT_OK(pt_config_copy(&d, &c));
    ASSERT_EQ_INT(d.n, N + 1);
    for (int i = 0; i < N; i += 997) {
        snprintf(k, sizeof k, "a-long-common-prefix-of-forty-bytes-xxxxx%d", i);
        ASSERT(pt_config_get(&d, k) && pt_config_get(&d, k) != pt_config_get(&c, k));
    }
    pt_config_free(&c);
    pt_config_free(&d);
    ASSERT(pt_config_get(&c, "x") == NULL); /* freed = zeroed = empty */
    ASSERT_OK(pt_config_set_int(&c, "x", 1));
    pt_config_free(&c);
}

static void build_map(void *ctx, size_t n)
{
    pt_config c = {0};
    char k[48];
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        snprintf(k, sizeof k, "metric/client-chosen/key-%zu", i);
        pt_config_set_double(&c, k, 1.0);
    }
    for (size_t i = 0; i < n; i++) { /* and look every key up again */
        snprintf(k, sizeof k, "metric/client-chosen/key-%zu", i);
        (void)pt_config_get(&c, k);
    }
    pt_config_free(&c);
}

/* Building (and reading) a map of 2n keys costs about twice n keys (the old
 * linear-scan map: four times). */
static void t_config_growth(void)
{
    double g = test_growth("pt_config set+get", build_map, NULL, 4000);
    ASSERT_MSG(g < 3.0, "2x the keys cost x%.2f", g);
}

/* pt_escape: peer text made safe for a one-line log (issue 11 item 10). */
static void t_escape(void)
{
    char out[64];
    ASSERT_STR_EQ(pt_escape(out, sizeof out, "plain text 1.0", PT_ESC_CSTR), "plain text 1.0");
    ASSERT_STR_EQ(pt_escape(out, sizeof out, "a\nINFO fake\r\tz", PT_ESC_CSTR),
                  "a\\nINFO fake\\r\\tz");
    ASSERT_STR_EQ(pt_escape(out, sizeof out, "\x1b[31mred\x7f", PT_ESC_CSTR), "\\x1b[31mred\\x7f");
    ASSERT_STR_EQ(pt_escape(out, sizeof out, "back\\slash", PT_ESC_CSTR), "back\\\\slash");
    /* explicit length: NULs are bytes like others */
    ASSERT_STR_EQ(pt_escape(out, sizeof out, "a\0b", 3), "a\\x00b");
    /* well-formed UTF-8 kept; C1 controls, bidi overrides, separators escaped */
    ASSERT_STR_EQ(pt_escape(out, sizeof out, "pr\xc3\xa9" "cision \xe2\x82\xac", PT_ESC_CSTR),
                  "pr\xc3\xa9" "cision \xe2\x82\xac");
    ASSERT_STR_EQ(pt_escape(out, sizeof out, "\xc2\x85|\xe2\x80\xae|\xe2\x80\xa8", PT_ESC_CSTR),
                  "\\u{0085}|\\u{202e}|\\u{2028}");
    /* malformed UTF-8: lone continuation, overlong, surrogate, truncated, > U+10FFFF */
    ASSERT_STR_EQ(pt_escape(out, sizeof out, "\x80\xc0\xaf\xed\xa0\x80\xe2\x82\xf5", PT_ESC_CSTR),
                  "\\x80\\xc0\\xaf\\xed\\xa0\\x80\\xe2\\x82\\xf5");
    /* truncation: "..." at the end, never a cut escape, always terminated */
    char small[12];
    ASSERT_STR_EQ(pt_escape(small, sizeof small, "abcdefghijklmnop", PT_ESC_CSTR), "abcdefgh...");
    ASSERT_STR_EQ(pt_escape(small, sizeof small, "abcdefghij\n", PT_ESC_CSTR), "abcdefgh...");
    ASSERT_STR_EQ(pt_escape(small, sizeof small, "abcdefghijk", PT_ESC_CSTR), "abcdefghijk");
    ASSERT_STR_EQ(pt_escape(small, sizeof small, "\n\n\n\n\n\n", PT_ESC_CSTR), "\\n\\n\\n\\n...");
    char tiny[2];
    ASSERT_STR_EQ(pt_escape(tiny, sizeof tiny, "xyz", PT_ESC_CSTR), "x"); /* no room for dots */
    ASSERT_STR_EQ(pt_escape(out, sizeof out, NULL, 0), "");
    /* output never holds a control byte, whatever the input */
    unsigned char all[256];
    char big[1100];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    pt_escape(big, sizeof big, all, sizeof all);
    for (const char *q = big; *q; q++)
        ASSERT_MSG((unsigned char)*q >= 0x20 && (unsigned char)*q != 0x7f,
                   "control byte 0x%02x in the output", (unsigned char)*q);
    ASSERT(strlen(big) > 256 && strstr(big, "...") == NULL);
}

TEST_MAIN(TEST(t_config), TEST(t_config_many), TEST(t_config_growth), TEST(t_strerror),
          TEST(t_seterr), TEST(t_log_file), TEST(t_timing), TEST(t_params), TEST(t_escape), TEST(t_escape_ctrl))
