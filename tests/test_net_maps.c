/*
 * test_net_maps.c - map<string, Scalar> decoding against hostile peers: the
 * caps of pnet_decode_limits (distinct keys per map, key length; defaults
 * and configured), repeated keys, and the cost of decoding growing linearly
 * with the number of keys (measured as a ratio in one run).
 */
#include "petal.h"
#include "pnet.h"
#include "test.h"

#include <stdint.h>

/* ---- raw protobuf, so that a message can repeat a key ----------------------- */

typedef struct rawbuf {
    uint8_t *p;
    size_t len, cap;
} rawbuf;

static void raw_put(rawbuf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n) nc *= 2;
        b->p = realloc(b->p, nc);
        b->cap = nc;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void raw_varint(rawbuf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    raw_put(b, t, n);
}

/* Append one metrics map entry {key: double v} as FitRes field 4. */
static void raw_entry(rawbuf *b, const char *key, size_t klen, double v)
{
    uint8_t scalar[9] = {0x09};
    size_t body = 1 + 1 + klen + 1 + 1 + 9; /* key tag/len/bytes, value tag/len/scalar */
    if (klen >= 128) body++;                  /* 2-byte key length */
    memcpy(scalar + 1, &v, 8);                /* little-endian hosts */
    raw_varint(b, 4 << 3 | 2);
    raw_varint(b, body);
    raw_varint(b, 1 << 3 | 2);
    raw_varint(b, klen);
    raw_put(b, key, klen);
    raw_varint(b, 2 << 3 | 2);
    raw_varint(b, 9);
    raw_put(b, scalar, 9);
}

/* Wrap a FitRes body as ClientMessage member 4 (fit_res). */
static void raw_client_fit(rawbuf *out, const rawbuf *fitres)
{
    raw_varint(out, 4 << 3 | 2);
    raw_varint(out, fitres->len);
    raw_put(out, fitres->p, fitres->len);
}

/* A FitRes ClientMessage with keys "k<i>" for i in [0, n) (each `rep` times). */
static void fit_with_keys(rawbuf *msg, size_t n, int rep)
{
    rawbuf body = {0};
    char k[32];
    for (int r = 0; r < rep; r++)
        for (size_t i = 0; i < n; i++) {
            int kl = snprintf(k, sizeof k, "k%zu", i);
            raw_entry(&body, k, (size_t)kl, (double)i + r);
        }
    memset(msg, 0, sizeof *msg);
    raw_client_fit(msg, &body);
    free(body.p);
}

static void t_map_caps_default(void)
{
    rawbuf m;
    pnet_client_in in;
    char err[PT_ERRLEN];
    fit_with_keys(&m, PNET_MAX_MAP_ENTRIES, 1);
    ASSERT_OK(pnet_client_in_decode(m.p, m.len, NULL, &in, err));
    ASSERT_EQ_INT(in.metrics.n, PNET_MAX_MAP_ENTRIES);
    pnet_client_in_free(&in);
    free(m.p);
    fit_with_keys(&m, PNET_MAX_MAP_ENTRIES + 1, 1);
    ASSERT_EQ_INT(pnet_client_in_decode(m.p, m.len, NULL, &in, err), PT_ERR_RANGE);
    ASSERT_CONTAINS(err, "more than 1024 distinct map keys");
    ASSERT_EQ_INT(in.metrics.n, 0); /* left empty */
    pnet_client_in_free(&in);
    free(m.p);
    /* repeated keys replace (protobuf's map semantics) and count once */
    fit_with_keys(&m, 3, 2000);
    ASSERT_OK(pnet_client_in_decode(m.p, m.len, NULL, &in, err));
    ASSERT_EQ_INT(in.metrics.n, 3);
    ASSERT_NEAR(pt_config_number_or(&in.metrics, "k2", 0), 2 + 1999, 0);
    pnet_client_in_free(&in);
    free(m.p);
    /* key length: 256 bytes pass, 257 do not */
    char key[PNET_MAX_KEY_LEN + 2];
    memset(key, 'x', sizeof key);
    for (int extra = 0; extra < 2; extra++) {
        rawbuf body = {0};
        raw_entry(&body, key, PNET_MAX_KEY_LEN + (size_t)extra, 1.0);
        memset(&m, 0, sizeof m);
        raw_client_fit(&m, &body);
        free(body.p);
        int rc = pnet_client_in_decode(m.p, m.len, NULL, &in, err);
        if (extra) {
            ASSERT_EQ_INT(rc, PT_ERR_RANGE);
            ASSERT_CONTAINS(err, "map key of 257 bytes, over the limit of 256");
        } else {
            ASSERT_OK(rc);
            ASSERT_EQ_INT(in.metrics.n, 1);
        }
        pnet_client_in_free(&in);
        free(m.p);
    }
}

static void t_map_caps_configured(void)
{
    rawbuf m;
    pnet_client_in in;
    pnet_server_in sin;
    char err[PT_ERRLEN];
    pnet_decode_limits lim = {.max_map_entries = 5000, .max_key_len = 8};
    fit_with_keys(&m, 5000, 1);
    ASSERT_OK(pnet_client_in_decode(m.p, m.len, &lim, &in, err));
    ASSERT_EQ_INT(in.metrics.n, 5000);
    pnet_client_in_free(&in);
    lim.max_map_entries = 10;
    ASSERT_EQ_INT(pnet_client_in_decode(m.p, m.len, &lim, &in, err), PT_ERR_RANGE);
    ASSERT_CONTAINS(err, "more than 10 distinct map keys");
    free(m.p);
    lim.max_key_len = PT_CONFIG_KEY_MAX + 1; /* more than checkpoints can hold */
    ASSERT_EQ_INT(pnet_client_in_decode(NULL, 0, &lim, &in, err), PT_ERR_INVAL);
    ASSERT_EQ_INT(pnet_server_in_decode(NULL, 0, &lim, &sin, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "max_key_len");
    /* the server's config maps (FitIns) are capped the same way */
    {
        pt_config cfg = {0};
        pnet_server_out so = {0};
        pnet_msg *msg = NULL;
        char k[32];
        for (int i = 0; i < 20; i++) {
            snprintf(k, sizeof k, "c%d", i);
            pt_config_set_int(&cfg, k, i);
        }
        so.type = PNET_SMSG_EVALUATE;
        so.config = &cfg;
        ASSERT_OK(pnet_server_out_msg(&so, &msg, err));
        lim = (pnet_decode_limits){.max_map_entries = 19};
        ASSERT_EQ_INT(pnet_server_in_decode(pnet_msg_data(msg), pnet_msg_len(msg), &lim, &sin,
                                            err),
                      PT_ERR_RANGE);
        lim.max_map_entries = 20;
        ASSERT_OK(pnet_server_in_decode(pnet_msg_data(msg), pnet_msg_len(msg), &lim, &sin, err));
        ASSERT_EQ_INT(sin.config.n, 20);
        pnet_server_in_free(&sin);
        pnet_msg_unref(msg);
        pt_config_free(&cfg);
    }
}

typedef struct decode_ctx {
    rawbuf m[2];
    size_t n;
    pnet_decode_limits lim;
} decode_ctx;

static void decode_keys(void *arg, size_t n)
{
    decode_ctx *c = arg;
    const rawbuf *m = &c->m[n == c->n ? 0 : 1];
    pnet_client_in in;
    char err[PT_ERRLEN];
    if (pnet_client_in_decode(m->p, m->len, &c->lim, &in, err)) fprintf(stderr, "%s\n", err);
    pnet_client_in_free(&in);
}

/* Decoding 2n metric keys costs about twice n (the old linear-scan map:
 * x4, 2.2 s for 40,000 keys). */
static void t_map_decode_growth(void)
{
    decode_ctx c = {.n = 4000, .lim = {.max_map_entries = 1000000}};
    fit_with_keys(&c.m[0], c.n, 1);
    fit_with_keys(&c.m[1], 2 * c.n, 1);
    double g = test_growth("FitRes metrics decode", decode_keys, &c, c.n);
    ASSERT_MSG(g < 3.0, "2x the keys cost x%.2f", g);
    free(c.m[0].p);
    free(c.m[1].p);
}

TEST_MAIN(TEST(t_map_caps_default), TEST(t_map_caps_configured), TEST(t_map_decode_growth))
