/* test_net_codec.c - net codec: golden bytes from Flower's wire, NPY layout
 * and parsing, Parameters round trips (bit-exact), Scalar maps against the
 * protoc-c generated code, decoder robustness (every truncation, random
 * corruption), and throughput of the 29.6 MB FitRes path. */
#include <stdint.h>
#include <time.h>

#include "test.h"

#include "net/transport.pb-c.h"
#include "pnet.h"

static int bytes_eq(const uint8_t *a, size_t an, const char *hexs)
{
    size_t n = strlen(hexs) / 2;
    if (an != n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hexs + 2 * i, "%2x", &v);
        if (a[i] != v) return 0;
    }
    return 1;
}

static int pack_server(const pnet_server_out *m, uint8_t **out, size_t *len)
{
    size_t sz, w;
    char err[PT_ERRLEN];
    int rc = pnet_server_out_size(m, &sz, err);
    if (rc) return rc;
    *out = malloc(sz ? sz : 1);
    rc = pnet_server_out_pack(m, *out, sz, &w, err);
    *len = w;
    if (!rc && w != sz) rc = -100;
    return rc;
}

static int pack_client(const pnet_client_out *m, uint8_t **out, size_t *len)
{
    size_t sz, w;
    char err[PT_ERRLEN];
    int rc = pnet_client_out_size(m, &sz, err);
    if (rc) return rc;
    *out = malloc(sz ? sz : 1);
    rc = pnet_client_out_pack(m, *out, sz, &w, err);
    *len = w;
    if (!rc && w != sz) rc = -100;
    return rc;
}

static void t_golden_server(void)
{
    uint8_t *b = NULL;
    size_t n;
    pnet_server_out m = {PNET_SMSG_RECONNECT, 5, NULL, NULL};
    ASSERT_OK(pack_server(&m, &b, &n));
    ASSERT_MSG(bytes_eq(b, n, "0a020805"), "ReconnectIns(5)");
    free(b);
    m.seconds = 0;
    ASSERT_OK(pack_server(&m, &b, &n));
    ASSERT_MSG(bytes_eq(b, n, "0a00"), "empty ReconnectIns");
    free(b);
    m.type = PNET_SMSG_GET_PARAMETERS;
    ASSERT_OK(pack_server(&m, &b, &n));
    ASSERT_MSG(bytes_eq(b, n, "1a00"), "GetParametersIns{}");
    free(b);
    /* decode them back */
    pnet_server_in in;
    char err[PT_ERRLEN];
    static const uint8_t r5[] = {0x0a, 0x02, 0x08, 0x05}, r0[] = {0x0a, 0x00};
    ASSERT_OK(pnet_server_in_decode(r5, sizeof r5, NULL, &in, err));
    ASSERT_EQ_INT(in.type, PNET_SMSG_RECONNECT);
    ASSERT_EQ_INT(in.seconds, 5);
    pnet_server_in_free(&in);
    ASSERT_OK(pnet_server_in_decode(r0, sizeof r0, NULL, &in, err));
    ASSERT_EQ_INT(in.type, PNET_SMSG_RECONNECT);
    ASSERT_EQ_INT(in.seconds, 0);
    pnet_server_in_free(&in);
    ASSERT_OK(pnet_server_in_decode(r0, 0, NULL, &in, err)); /* empty message: no member */
    ASSERT_EQ_INT(in.type, PNET_SMSG_NONE);
    pnet_server_in_free(&in);
}

static void t_golden_client(void)
{
    uint8_t *b = NULL;
    size_t n;
    pnet_client_out m = {0};
    m.type = PNET_CMSG_GET_PROPERTIES;
    m.status_message = "Success";
    ASSERT_OK(pack_client(&m, &b, &n));
    /* 12 0b | status 0a 09 12 07 "Success" */
    ASSERT_MSG(bytes_eq(b, n, "120b0a09120753756363657373"), "OK Status");
    free(b);
    m = (pnet_client_out){0};
    m.type = PNET_CMSG_DISCONNECT;
    m.reason = PNET_REASON_RECONNECT;
    ASSERT_OK(pack_client(&m, &b, &n));
    ASSERT_MSG(bytes_eq(b, n, "0a020801"), "DisconnectRes(RECONNECT)");
    free(b);
    m = (pnet_client_out){0};
    m.type = PNET_CMSG_EVALUATE;
    m.loss = 1.0f;
    m.num_examples = 300;
    ASSERT_OK(pack_client(&m, &b, &n));
    /* 2a 0a | 0a 00 | 15 0000803f | 18 ac02 */
    ASSERT_MSG(bytes_eq(b, n, "2a0a0a00150000803f18ac02"), "EvaluateRes");
    pnet_client_in in;
    char err[PT_ERRLEN];
    ASSERT_OK(pnet_client_in_decode(b, n, NULL, &in, err));
    ASSERT_EQ_INT(in.type, PNET_CMSG_EVALUATE);
    ASSERT(in.loss == 1.0f);
    ASSERT_EQ_INT(in.num_examples, 300);
    pnet_client_in_free(&in);
    free(b);
    m.type = (pnet_cmsg_type)9;
    ASSERT_EQ_INT(pnet_client_out_size(&m, &n, err), PT_ERR_INVAL);
}

static void t_npy_layout(void)
{
    const int64_t s23[] = {2, 3}, s4[] = {4}, s0[] = {0}, sm[] = {1000, 1000},
                  s8[] = {1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000};
    ASSERT_EQ_INT(pnet_npy_size(2, s23), 152);
    ASSERT_EQ_INT(pnet_npy_size(1, s4), 144);
    ASSERT_EQ_INT(pnet_npy_size(0, NULL), 132);
    ASSERT_EQ_INT(pnet_npy_size(1, s0), 128);
    ASSERT_EQ_INT(pnet_npy_size(2, sm), 4000128);
    ASSERT_EQ_INT(pnet_npy_header_size(8, s8), 192);
    const int64_t s2[] = {2};
    float v[2] = {1, 2};
    uint8_t out[136];
    size_t w;
    char err[PT_ERRLEN];
    ASSERT_OK(pnet_npy_encode(v, 1, s2, out, sizeof out, &w, err));
    ASSERT_EQ_INT(w, 136);
    ASSERT(!memcmp(out, "\x93NUMPY\x01\x00\x76\x00", 10));
    ASSERT(!memcmp(out + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 57));
    ASSERT_EQ_INT(out[127], '\n');
    ASSERT(!memcmp(out + 128, "\x00\x00\x80\x3f\x00\x00\x00\x40", 8));
    pnet_npy_info info;
    ASSERT_OK(pnet_npy_view(out, w, &info, err));
    ASSERT_EQ_INT(info.ndim, 1);
    ASSERT_EQ_INT(info.shape[0], 2);
    ASSERT_EQ_INT(info.data_offset, 128);
    ASSERT(info.data == out + 128);
    ASSERT_EQ_INT(pnet_npy_encode(v, 1, s2, out, 135, &w, err), PT_ERR_RANGE);
    const int64_t neg[] = {-1};
    ASSERT_EQ_INT(pnet_npy_encode(v, 1, neg, out, sizeof out, &w, err), PT_ERR_INVAL);
}

static int view_err(const char *hdr, size_t datalen, char *err)
{
    uint8_t buf[512] = "\x93NUMPY\x01\x00";
    size_t h = strlen(hdr);
    buf[8] = (uint8_t)h;
    buf[9] = 0;
    memcpy(buf + 10, hdr, h);
    memset(buf + 10 + h, 0, datalen);
    pnet_npy_info info;
    return pnet_npy_view(buf, 10 + h + datalen, &info, err);
}

static void t_npy_reject(void)
{
    char err[PT_ERRLEN];
    ASSERT_OK(view_err("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, err));
    ASSERT_EQ_INT(view_err("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }", 24, err),
                  PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "tuple");
    ASSERT_EQ_INT(view_err("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 23, err),
                  PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "EOF");
    ASSERT_EQ_INT(view_err("{'descr': '<x4', 'fortran_order': False, 'shape': (2,), }", 8, err),
                  PT_ERR_UNSUPPORTED);
    ASSERT_CONTAINS(err, "<x4");
    ASSERT_EQ_INT(view_err("{'descr': '<f4', 'shape': (2,), }", 8, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "fortran_order");
    ASSERT_EQ_INT(view_err("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8, err),
                  PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "negative");
    ASSERT_EQ_INT(view_err("{'descr': '<f4', 'fortran_order': False, 'shape': "
                           "(4294967296, 4294967296, 4294967296), }", 8, err),
                  PT_ERR_RANGE);
    ASSERT_EQ_INT(view_err("{'descr': '<f4', 'fortran_order': False, 'shape': "
                           "(1, 1, 1, 1, 1, 1, 1, 1, 1), }", 4, err),
                  PT_ERR_UNSUPPORTED);
    pnet_npy_info info;
    ASSERT_EQ_INT(pnet_npy_view((const uint8_t *)"\x93NUMPY", 6, &info, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "magic");
    ASSERT_EQ_INT(pnet_npy_view(NULL, 0, &info, err), PT_ERR_FORMAT);
    /* header length beyond the buffer */
    uint8_t b[12] = "\x93NUMPY\x01\x00\xff\xff";
    ASSERT_EQ_INT(pnet_npy_view(b, 12, &info, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "truncated");
}

static void t_npy_convert(void)
{
    /* fortran (2,3) f8: logical [[0,1,2],[3,4,5]] stored column-major */
    const char *hdr = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }";
    uint8_t buf[256] = "\x93NUMPY\x01\x00";
    size_t h = strlen(hdr);
    double col[6] = {0, 3, 1, 4, 2, 5};
    buf[8] = (uint8_t)h;
    memcpy(buf + 10, hdr, h);
    memcpy(buf + 10 + h, col, sizeof col);
    pnet_npy_info info;
    char err[PT_ERRLEN];
    float f[6];
    ASSERT_OK(pnet_npy_view(buf, 10 + h + sizeof col, &info, err));
    ASSERT_EQ_INT(info.dtype, PNET_DT_F8);
    ASSERT_EQ_INT(info.fortran_order, 1);
    ASSERT_OK(pnet_npy_to_f32(&info, f, 6, 0, err));
    for (int i = 0; i < 6; i++) ASSERT(f[i] == (float)i);
    ASSERT_EQ_INT(pnet_npy_to_f32(&info, f, 5, 0, err), PT_ERR_MISMATCH);
    ASSERT_EQ_INT(pnet_npy_to_f32(&info, f, 6, PNET_NPY_F32_ONLY, err), PT_ERR_UNSUPPORTED);
    col[2] = 1e300;
    memcpy(buf + 10 + h, col, sizeof col);
    ASSERT_EQ_INT(pnet_npy_to_f32(&info, f, 6, PNET_NPY_ERR_OVERFLOW, err), PT_ERR_RANGE);
    ASSERT_CONTAINS(err, "overflows");
}

static void fill_params(pt_params *p, int nt)
{
    int nd[3] = {4, 1, 0};
    const int64_t s0[] = {3, 3, 1, 8}, s1[] = {8};
    const int64_t *sh[3] = {s0, s1, NULL};
    pt_params_init(p, (size_t)nt, nd, sh);
    for (size_t i = 0; i < p->total; i++) p->buf[i] = (float)i * 0.37f - 5.0f;
    uint32_t nanbits = 0x7fc01234u, den = 3u, mz = 0x80000000u;
    memcpy(&p->buf[0], &nanbits, 4);
    memcpy(&p->buf[1], &den, 4);
    memcpy(&p->buf[2], &mz, 4);
}

static void t_params_roundtrip(void)
{
    pt_params p = {0}, q = {0};
    pt_config cfg = {0};
    fill_params(&p, 3);
    pt_config_set_double(&cfg, "lr", 0.01);
    pt_config_set_int(&cfg, "epochs", 2);
    pnet_server_out m = {PNET_SMSG_FIT, 0, &p, &cfg};
    uint8_t *b;
    size_t n;
    char err[PT_ERRLEN];
    ASSERT_OK(pack_server(&m, &b, &n));
    pnet_server_in in;
    ASSERT_OK(pnet_server_in_decode(b, n, NULL, &in, err));
    ASSERT_EQ_INT(in.type, PNET_SMSG_FIT);
    ASSERT_EQ_INT(in.params.n, 3);
    ASSERT_EQ_INT(in.params.tensor_type.len, 13);
    ASSERT(!memcmp(in.params.tensor_type.ptr, "numpy.ndarray", 13));
    ASSERT_NEAR(pt_config_number_or(&in.config, "lr", 0), 0.01, 0);
    ASSERT_EQ_INT(pt_config_get(&in.config, "epochs")->v.i, 2);
    ASSERT_OK(pnet_params_decode(&in.params, &q, 0, err));
    ASSERT(pt_params_same_shape(&p, &q));
    ASSERT(!memcmp(p.buf, q.buf, p.total * 4));
    /* decode into the existing list again */
    memset(q.buf, 0, q.total * 4);
    ASSERT_OK(pnet_params_decode(&in.params, &q, 0, err));
    ASSERT(!memcmp(p.buf, q.buf, p.total * 4));
    /* shape mismatch names the tensor and the shapes */
    pt_params r = {0};
    int nd[3] = {4, 1, 0};
    const int64_t s0[] = {3, 3, 1, 8}, s1[] = {9};
    const int64_t *sh[3] = {s0, s1, NULL};
    pt_params_init(&r, 3, nd, sh);
    ASSERT_EQ_INT(pnet_params_decode(&in.params, &r, 0, err), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(err, "tensor 1: shape (8,), expected (9,)");
    pt_params_free(&r);
    pt_params_init(&r, 2, nd, sh);
    ASSERT_EQ_INT(pnet_params_decode(&in.params, &r, 0, err), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(err, "3 tensors");
    pt_params_free(&r);
    pnet_server_in_free(&in);
    free(b);
    pt_params_free(&q);

    /* and through a FitRes */
    pnet_client_out c = {0};
    c.type = PNET_CMSG_FIT;
    c.params = &p;
    c.num_examples = 1234;
    c.metrics = &cfg;
    c.status_message = "Success";
    ASSERT_OK(pack_client(&c, &b, &n));
    pnet_client_in ci;
    ASSERT_OK(pnet_client_in_decode(b, n, NULL, &ci, err));
    ASSERT_EQ_INT(ci.num_examples, 1234);
    ASSERT_EQ_INT(ci.status_code, 0);
    ASSERT_EQ_INT(ci.status_message.len, 7);
    ASSERT_OK(pnet_params_decode(&ci.params, &q, PNET_NPY_F32_ONLY, err));
    ASSERT(!memcmp(p.buf, q.buf, p.total * 4));
    /* an NPY with a bad header inside a valid protobuf is an NPY error */
    uint8_t *hdr = (uint8_t *)ci.params.tensors[1].ptr;
    hdr[0] = 'X';
    ASSERT_EQ_INT(pnet_params_decode(&ci.params, &q, 0, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "tensor 1");
    pnet_client_in_free(&ci);
    free(b);
    pt_params_free(&q);
    pt_params_free(&p);
    pt_config_free(&cfg);
}

/* Our map encoding equals protobuf-c's packing of the same entries, and
 * protobuf-c reads back every Scalar kind. */
static void t_scalars_vs_protobuf_c(void)
{
    pt_config cfg = {0};
    pt_config_set_double(&cfg, "d", -2.5e-300);
    pt_config_set_int(&cfg, "i", INT64_MIN);
    pt_config_set_int(&cfg, "z", 0);
    pt_config_set_uint(&cfg, "u", UINT64_MAX);
    pt_config_set_bool(&cfg, "b", 1);
    pt_config_set_bool(&cfg, "f", 0);
    pt_config_set_string(&cfg, "s", "h\xc3\xa9llo");
    pt_config_set_bytes(&cfg, "y", "\x00\xff", 2);
    pnet_server_out m = {PNET_SMSG_GET_PROPERTIES, 0, NULL, &cfg};
    uint8_t *b;
    size_t n;
    ASSERT_OK(pack_server(&m, &b, &n));
    Flwr__Proto__ServerMessage *sm = flwr__proto__server_message__unpack(NULL, n, b);
    ASSERT(sm);
    ASSERT_EQ_INT(sm->msg_case, FLWR__PROTO__SERVER_MESSAGE__MSG_GET_PROPERTIES_INS);
    Flwr__Proto__ServerMessage__GetPropertiesIns *gp = sm->get_properties_ins;
    ASSERT_EQ_INT(gp->n_config, 8);
    ASSERT_STR_EQ(gp->config[0]->key, "d");
    ASSERT(gp->config[0]->value->double_ == -2.5e-300);
    ASSERT(gp->config[1]->value->sint64 == INT64_MIN);
    ASSERT_EQ_INT(gp->config[2]->value->scalar_case, FLWR__PROTO__SCALAR__SCALAR_SINT64);
    ASSERT(gp->config[3]->value->uint64 == UINT64_MAX);
    ASSERT_EQ_INT(gp->config[4]->value->bool_, 1);
    ASSERT_EQ_INT(gp->config[5]->value->scalar_case, FLWR__PROTO__SCALAR__SCALAR_BOOL);
    ASSERT_STR_EQ(gp->config[6]->value->string, "h\xc3\xa9llo");
    ASSERT_EQ_INT(gp->config[7]->value->bytes.len, 2);
    /* protobuf-c packs the same message to the same bytes */
    size_t n2 = flwr__proto__server_message__get_packed_size(sm);
    uint8_t *b2 = malloc(n2);
    flwr__proto__server_message__pack(sm, b2);
    ASSERT_EQ_INT(n2, n);
    ASSERT(!memcmp(b, b2, n));
    free(b2);
    flwr__proto__server_message__free_unpacked(sm, NULL);
    /* and we decode it back */
    pnet_server_in in;
    char err[PT_ERRLEN];
    ASSERT_OK(pnet_server_in_decode(b, n, NULL, &in, err));
    ASSERT_EQ_INT(in.config.n, 8);
    ASSERT(pt_config_get(&in.config, "i")->v.i == INT64_MIN);
    ASSERT(pt_config_get(&in.config, "u")->v.u == UINT64_MAX);
    ASSERT_EQ_INT(pt_config_get(&in.config, "y")->v.s.len, 2);
    ASSERT_EQ_INT(pt_config_get(&in.config, "f")->type, PT_SCALAR_BOOL);
    pnet_server_in_free(&in);
    free(b);
    /* a map entry without a value is refused with a clear reason */
    static const uint8_t noval[] = {0x12, 0x05, 0x0a, 0x03, 0x0a, 0x01, 'k'};
    ASSERT_EQ_INT(pnet_server_in_decode(noval, sizeof noval, NULL, &in, err), PT_ERR_PROTO);
    ASSERT_CONTAINS(err, "no Scalar value");
    pt_config_free(&cfg);
}

/* Every truncation and random corruption of a FitRes decodes or fails with
 * PT_ERR_PROTO, never crashes (ASan build checks the reads). */
static void t_decoder_robust(void)
{
    pt_params p = {0};
    pt_config cfg = {0};
    fill_params(&p, 3);
    pt_config_set_string(&cfg, "s", "x");
    pt_config_set_double(&cfg, "acc", 0.5);
    pnet_client_out c = {0};
    c.type = PNET_CMSG_FIT;
    c.params = &p;
    c.num_examples = 7;
    c.metrics = &cfg;
    uint8_t *b;
    size_t n;
    char err[PT_ERRLEN];
    ASSERT_OK(pack_client(&c, &b, &n));
    int protos = 0;
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *t = malloc(cut ? cut : 1);
        memcpy(t, b, cut);
        pnet_client_in in;
        int rc = pnet_client_in_decode(t, cut, NULL, &in, err);
        ASSERT_MSG(rc == PT_OK || rc == PT_ERR_PROTO, "cut %zu: %d", cut, rc);
        if (rc) protos++;
        if (!rc && in.params.n) {
            pt_params q = {0};
            pnet_params_decode(&in.params, &q, 0, err);
            pt_params_free(&q);
        }
        pnet_client_in_free(&in);
        free(t);
    }
    ASSERT(protos > 0);
    uint32_t seed = 12345;
    for (int it = 0; it < 3000; it++) {
        uint8_t *t = malloc(n);
        memcpy(t, b, n);
        for (int k = 0; k < 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            t[pos] = (uint8_t)(seed >> 16);
        }
        size_t len = n - (size_t)(seed % 7);
        pnet_client_in in;
        int rc = pnet_client_in_decode(t, len, NULL, &in, err);
        ASSERT_MSG(rc == PT_OK || rc == PT_ERR_PROTO, "iteration %d: %d", it, rc);
        if (!rc) {
            pt_params q = {0};
            rc = pnet_params_decode(&in.params, &q, 0, err);
            pt_params_free(&q);
        }
        pnet_client_in_free(&in);
        free(t);
    }
    /* error text names the problem and the offset */
    pnet_client_in in2;
    ASSERT_EQ_INT(pnet_client_in_decode(b, n - 1, NULL, &in2, err), PT_ERR_PROTO);
    ASSERT_CONTAINS(err, "undecodable protobuf");
    ASSERT_CONTAINS(err, "at byte");
    free(b);
    pt_params_free(&p);
    pt_config_free(&cfg);
}

/* seed-cnn sized model (7.4 M floats, 29.6 MB): encode and decode speed. */
static void t_throughput(void)
{
    int nd[4] = {4, 1, 2, 1};
    const int64_t s0[] = {3, 3, 64, 128}, s1[] = {128}, s2[] = {57344, 128}, s3[] = {10};
    const int64_t *sh[4] = {s0, s1, s2, s3};
    pt_params p = {0}, q = {0};
    ASSERT_OK(pt_params_init(&p, 4, nd, sh));
    ASSERT_OK(pt_params_init_like(&q, &p));
    for (size_t i = 0; i < p.total; i++) p.buf[i] = (float)(i % 1000) * 1e-3f;
    pnet_client_out c = {0};
    c.type = PNET_CMSG_FIT;
    c.params = &p;
    c.num_examples = 100;
    size_t sz, w;
    char err[PT_ERRLEN];
    ASSERT_OK(pnet_client_out_size(&c, &sz, err));
    uint8_t *b = malloc(sz);
    memset(b, 0, sz);
    memset(q.buf, 0, q.total * 4);
    double best_enc = 1e9, best_dec = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = pt_now();
        ASSERT_OK(pnet_client_out_pack(&c, b, sz, &w, err));
        double t1 = pt_now();
        pnet_client_in in;
        ASSERT_OK(pnet_client_in_decode(b, w, NULL, &in, err));
        ASSERT_OK(pnet_params_decode(&in.params, &q, PNET_NPY_F32_ONLY, err));
        double t2 = pt_now();
        pnet_client_in_free(&in);
        if (t1 - t0 < best_enc) best_enc = t1 - t0;
        if (t2 - t1 < best_dec) best_dec = t2 - t1;
    }
    ASSERT(!memcmp(p.buf, q.buf, p.total * 4));
    fprintf(stderr, "  FitRes %.1f MB: encode %.2f GB/s, decode into params %.2f GB/s\n",
            (double)sz / 1e6, (double)sz / best_enc / 1e9, (double)sz / best_dec / 1e9);
    free(b);
    pt_params_free(&p);
    pt_params_free(&q);
}

/* Straight into refcounted transport messages. */
static void t_into_pnet_msg(void)
{
    pt_params p = {0};
    pt_config cfg = {0};
    char err[PT_ERRLEN];
    fill_params(&p, 3);
    pt_config_set_int(&cfg, "epochs", 1);
    pnet_server_out m = {PNET_SMSG_FIT, 0, &p, &cfg};
    pnet_msg *msg = NULL;
    size_t sz;
    ASSERT_OK(pnet_server_out_size(&m, &sz, err));
    ASSERT_OK(pnet_server_out_msg(&m, &msg, err));
    ASSERT_EQ_INT(pnet_msg_len(msg), sz);
    pnet_server_in in;
    ASSERT_OK(pnet_server_in_decode(pnet_msg_data(msg), pnet_msg_len(msg), NULL, &in, err));
    ASSERT_EQ_INT(in.params.n, 3);
    pnet_server_in_free(&in);
    pnet_msg_unref(msg);
    pnet_client_out c = {0};
    c.type = PNET_CMSG_DISCONNECT;
    ASSERT_OK(pnet_client_out_msg(&c, &msg, err));
    ASSERT_EQ_INT(pnet_msg_len(msg), 2);
    ASSERT(!memcmp(pnet_msg_data(msg), "\x0a\x00", 2));
    pnet_msg_unref(msg);
    c.type = PNET_CMSG_NONE;
    ASSERT_EQ_INT(pnet_client_out_msg(&c, &msg, err), PT_ERR_INVAL);
    ASSERT(msg == NULL);
    pt_params_free(&p);
    pt_config_free(&cfg);
}

/* pnet_params_decode into an existing list validates the whole message first:
 * a bad last tensor or a NaN anywhere leaves every value of dst as it was. */
static void t_params_validated_whole(void)
{
    pt_params p = {0}, dst = {0}, shp = {0};
    char err[PT_ERRLEN];
    fill_params(&p, 3); /* tensor 0 element 0 is a NaN */
    pnet_server_out m = {PNET_SMSG_EVALUATE, 0, &p, NULL};
    uint8_t *b;
    size_t n;
    ASSERT_OK(pack_server(&m, &b, &n));
    pnet_server_in in;
    ASSERT_OK(pnet_server_in_decode(b, n, NULL, &in, err));
    ASSERT_OK(pt_params_init_like(&dst, &p));
    for (size_t i = 0; i < dst.total; i++) dst.buf[i] = 42.0f;
    ASSERT_EQ_INT(pnet_params_decode(&in.params, &dst, PNET_NPY_FINITE, err), PT_ERR_DIVERGED);
    ASSERT_CONTAINS(err, "tensor 0: npy: element 0 is not finite (NaN)");
    for (size_t i = 0; i < dst.total; i++) ASSERT_NEAR(dst.buf[i], 42.0f, 0);
    ASSERT_EQ_INT(pnet_params_check(&in.params, &dst, PNET_NPY_FINITE, err), PT_ERR_DIVERGED);
    ASSERT_OK(pnet_params_check(&in.params, &dst, 0, err));
    /* the shape of the last tensor differs: nothing of tensors 0 and 1 is written */
    int nd[3] = {4, 1, 1};
    const int64_t s0[] = {3, 3, 1, 8}, s1[] = {8}, s2[] = {1};
    const int64_t *sh[3] = {s0, s1, s2};
    ASSERT_OK(pt_params_init(&shp, 3, nd, sh));
    for (size_t i = 0; i < shp.total; i++) shp.buf[i] = 7.0f;
    ASSERT_EQ_INT(pnet_params_decode(&in.params, &shp, 0, err), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(err, "tensor 2: shape (), expected (1,)");
    for (size_t i = 0; i < shp.total; i++) ASSERT_NEAR(shp.buf[i], 7.0f, 0);
    /* without the NaN it decodes */
    p.buf[0] = 1.5f;
    free(b);
    pnet_server_in_free(&in);
    ASSERT_OK(pack_server(&m, &b, &n));
    ASSERT_OK(pnet_server_in_decode(b, n, NULL, &in, err));
    ASSERT_OK(pnet_params_decode(&in.params, &dst, PNET_NPY_FINITE, err));
    ASSERT(!memcmp(dst.buf, p.buf, p.total * 4));
    pnet_server_in_free(&in);
    free(b);
    pt_params_free(&p);
    pt_params_free(&dst);
    pt_params_free(&shp);
}

/* Config keys compare by length: "batch_size\0junk" from the wire is its own
 * key, not "batch_size", and survives a re-encode. */
static void t_config_key_with_nul(void)
{
    /* FitIns { config { "batch_size\0junk": sint64 2^20 (zigzag 2^21) }, { "batch_size": 32 } } */
    static const uint8_t entry1[] = {0x0a, 15, 'b', 'a', 't', 'c', 'h', '_', 's', 'i', 'z', 'e',
                                     0, 'j', 'u', 'n', 'k', 0x12, 5, 0x40, 0x80, 0x80, 0x80, 0x01};
    static const uint8_t entry2[] = {0x0a, 10, 'b', 'a', 't', 'c', 'h', '_', 's', 'i', 'z', 'e',
                                     0x12, 2, 0x40, 64};
    uint8_t buf[128];
    size_t n = 0, fit_len = 2 + sizeof entry1 + 2 + sizeof entry2;
    buf[n++] = 0x22; /* field 4 fit_ins */
    buf[n++] = (uint8_t)fit_len;
    buf[n++] = 0x12;
    buf[n++] = sizeof entry1;
    memcpy(buf + n, entry1, sizeof entry1);
    n += sizeof entry1;
    buf[n++] = 0x12;
    buf[n++] = sizeof entry2;
    memcpy(buf + n, entry2, sizeof entry2);
    n += sizeof entry2;
    char err[PT_ERRLEN];
    pnet_server_in in;
    ASSERT_OK(pnet_server_in_decode(buf, n, NULL, &in, err));
    ASSERT_EQ_INT(in.config.n, 2);
    ASSERT_EQ_INT(pt_config_get(&in.config, "batch_size")->v.i, 32);
    const pt_scalar *odd = pt_config_get_len(&in.config, "batch_size\0junk", 15);
    ASSERT(odd != NULL);
    ASSERT_EQ_INT(odd->v.i, 1 << 20);
    /* encoded again, the key keeps its 15 bytes */
    pnet_server_out m = {PNET_SMSG_GET_PROPERTIES, 0, NULL, &in.config};
    uint8_t *b;
    size_t bn;
    ASSERT_OK(pack_server(&m, &b, &bn));
    pnet_server_in back;
    ASSERT_OK(pnet_server_in_decode(b, bn, NULL, &back, err));
    ASSERT_EQ_INT(back.config.n, 2);
    ASSERT(pt_config_get_len(&back.config, "batch_size\0junk", 15) != NULL);
    ASSERT_EQ_INT(pt_config_get(&back.config, "batch_size")->v.i, 32);
    pnet_server_in_free(&back);
    pnet_server_in_free(&in);
    free(b);
}

TEST_MAIN(TEST(t_golden_server), TEST(t_golden_client), TEST(t_npy_layout), TEST(t_npy_reject),
          TEST(t_npy_convert), TEST(t_params_roundtrip), TEST(t_params_validated_whole), TEST(t_config_key_with_nul), TEST(t_scalars_vs_protobuf_c),
          TEST(t_decoder_robust), TEST(t_throughput), TEST(t_into_pnet_msg))
