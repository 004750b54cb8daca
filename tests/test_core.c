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

TEST_MAIN(TEST(t_config), TEST(t_strerror), TEST(t_seterr), TEST(t_log_file), TEST(t_escape_ctrl), TEST(t_timing), TEST(t_params))
