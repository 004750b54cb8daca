/* test_net_codec_peer.c - helper for tests/test_net_codec.py: exposes the net
 * codec on stdin/stdout so that Python (numpy, python3-protobuf with stubs
 * from net/proto/transport.proto) can check it byte for byte.
 *
 *   npy-write SHAPE...   SHAPE = "-" (0-d) or "d0,d1,..."; data k*0.25-1.
 *                        Writes each file as 8-byte LE length + bytes.
 *   npy-read [f32only|overflow]
 *                        Reads (8-byte LE length + bytes)*; one line each:
 *                        "OK dtype fortran ndim d0 d1 .. hex(f32 data)" or
 *                        "ERR code message".
 *   enc-server NAME | enc-client NAME   canonical messages (see cases()).
 *   dec-server | dec-client             stdin message -> JSON dump.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pnet.h"

static uint8_t *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    for (;;) {
        if (n == cap) b = realloc(b, cap *= 2);
        size_t r = fread(b + n, 1, cap - n, f);
        if (!r) break;
        n += r;
    }
    *len = n;
    return b;
}

static void hex(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
}

static void put_len(size_t n)
{
    uint8_t l[8];
    for (int i = 0; i < 8; i++) l[i] = (uint8_t)((uint64_t)n >> (8 * i));
    fwrite(l, 1, 8, stdout);
}

static int npy_write(int argc, char **argv)
{
    for (int a = 0; a < argc; a++) {
        int64_t shape[PT_MAX_DIMS];
        int nd = 0;
        if (strcmp(argv[a], "-")) {
            char *s = argv[a];
            while (*s && nd < PT_MAX_DIMS) {
                shape[nd++] = strtoll(s, &s, 10);
                if (*s == ',') s++;
            }
        }
        size_t numel = 1;
        for (int d = 0; d < nd; d++) numel *= (size_t)shape[d];
        float *data = malloc((numel ? numel : 1) * sizeof *data);
        for (size_t k = 0; k < numel; k++) data[k] = (float)k * 0.25f - 1.0f;
        size_t sz = pnet_npy_size(nd, shape), w;
        uint8_t *out = malloc(sz);
        char err[PT_ERRLEN];
        if (pnet_npy_encode(data, nd, shape, out, sz, &w, err)) {
            fprintf(stderr, "encode: %s\n", err);
            return 1;
        }
        put_len(w);
        fwrite(out, 1, w, stdout);
        free(out);
        free(data);
    }
    return 0;
}

static int npy_read(unsigned flags)
{
    size_t len, off = 0;
    uint8_t *all = read_all(stdin, &len);
    while (off + 8 <= len) {
        uint64_t n = 0;
        for (int i = 0; i < 8; i++) n |= (uint64_t)all[off + i] << (8 * i);
        off += 8;
        if (n > len - off) return 1;
        /* a private copy so ASan sees reads beyond the blob */
        uint8_t *blob = malloc(n ? n : 1);
        memcpy(blob, all + off, n);
        off += n;
        pnet_npy_info info;
        char err[PT_ERRLEN] = "";
        int rc = pnet_npy_view(blob, n, &info, err);
        float *f = NULL;
        if (!rc) {
            f = malloc((info.numel ? info.numel : 1) * sizeof *f);
            rc = pnet_npy_to_f32(&info, f, info.numel, flags, err);
        }
        if (rc) {
            printf("ERR %d %s\n", rc, err);
        } else {
            static const char *dt[] = {"?", "f4", "f8", "i8"};
            printf("OK %s %d %d", dt[info.dtype], info.fortran_order, info.ndim);
            for (int d = 0; d < info.ndim; d++) printf(" %" PRId64, info.shape[d]);
            printf(" ");
            hex(f, info.numel * 4);
            printf("\n");
        }
        free(f);
        free(blob);
    }
    free(all);
    return 0;
}

/* ---- canonical cases (mirrored in tests/test_net_codec.py) ---------------- */

static void make_config(pt_config *c)
{
    pt_config_set_double(c, "lr", 0.001);
    pt_config_set_int(c, "epochs", 3);
    pt_config_set_int(c, "neg", -7);
    pt_config_set_int(c, "zero", 0);
    pt_config_set_uint(c, "big", UINT64_MAX);
    pt_config_set_bool(c, "flag", 1);
    pt_config_set_bool(c, "off", 0);
    pt_config_set_string(c, "name", "petal \xc3\xbc");
    pt_config_set_string(c, "empty", "");
    pt_config_set_bytes(c, "blob", "\x00\x01\xff", 3);
}

static void make_params(pt_params *p)
{
    const int nd[4] = {2, 1, 0, 1};
    const int64_t s0[] = {3, 2}, s1[] = {4}, s3[] = {0};
    const int64_t *sh[4] = {s0, s1, NULL, s3};
    pt_params_init(p, 4, nd, sh);
    for (size_t k = 0; k < 6; k++) p->t[0].data[k] = (float)k * 0.5f - 1.0f;
    uint32_t bits[4] = {0x7fc00001u, 0x80000000u, 0x00000001u, 0x7f800000u};
    memcpy(p->t[1].data, bits, sizeof bits);
    p->t[2].data[0] = 42.5f;
}

static int enc(int server, const char *name)
{
    pt_config cfg = {0};
    pt_params par = {0};
    size_t sz = 0, w = 0;
    char err[PT_ERRLEN];
    int rc;
    make_config(&cfg);
    make_params(&par);
    if (server) {
        pnet_server_out m = {0};
        if (!strcmp(name, "reconnect0")) m.type = PNET_SMSG_RECONNECT;
        else if (!strcmp(name, "reconnect5")) m = (pnet_server_out){PNET_SMSG_RECONNECT, 5, 0, 0};
        else if (!strcmp(name, "get_properties"))
            m = (pnet_server_out){PNET_SMSG_GET_PROPERTIES, 0, NULL, &cfg};
        else if (!strcmp(name, "get_parameters")) m.type = PNET_SMSG_GET_PARAMETERS;
        else if (!strcmp(name, "fit")) m = (pnet_server_out){PNET_SMSG_FIT, 0, &par, &cfg};
        else if (!strcmp(name, "fit_empty")) m.type = PNET_SMSG_FIT;
        else if (!strcmp(name, "evaluate"))
            m = (pnet_server_out){PNET_SMSG_EVALUATE, 0, &par, &cfg};
        else return 2;
        rc = pnet_server_out_size(&m, &sz, err);
        uint8_t *b = malloc(sz + 1);
        if (!rc) rc = pnet_server_out_pack(&m, b, sz, &w, err);
        if (!rc && w != sz) rc = -100;
        if (!rc) fwrite(b, 1, w, stdout);
        free(b);
    } else {
        pnet_client_out m = {0};
        m.status_message = "Success";
        if (!strcmp(name, "disconnect")) {
            m.type = PNET_CMSG_DISCONNECT;
            m.reason = PNET_REASON_RECONNECT;
        } else if (!strcmp(name, "get_properties_res")) {
            m.type = PNET_CMSG_GET_PROPERTIES;
            m.metrics = &cfg;
        } else if (!strcmp(name, "get_parameters_res")) {
            m.type = PNET_CMSG_GET_PARAMETERS;
            m.params = &par;
        } else if (!strcmp(name, "fit_res")) {
            m.type = PNET_CMSG_FIT;
            m.params = &par;
            m.num_examples = 60000;
            m.metrics = &cfg;
        } else if (!strcmp(name, "fit_res_not_implemented")) {
            m.type = PNET_CMSG_FIT;
            m.status_code = PNET_CODE_FIT_NOT_IMPLEMENTED;
            m.status_message = "Client does not implement `fit`";
        } else if (!strcmp(name, "evaluate_res")) {
            m.type = PNET_CMSG_EVALUATE;
            m.loss = 0.3125f;
            m.num_examples = 10000;
            m.metrics = &cfg;
        } else {
            return 2;
        }
        rc = pnet_client_out_size(&m, &sz, err);
        uint8_t *b = malloc(sz + 1);
        if (!rc) rc = pnet_client_out_pack(&m, b, sz, &w, err);
        if (!rc && w != sz) rc = -100;
        if (!rc) fwrite(b, 1, w, stdout);
        free(b);
    }
    pt_config_free(&cfg);
    pt_params_free(&par);
    if (rc) fprintf(stderr, "encode %s: %d %s\n", name, rc, err);
    return rc ? 1 : 0;
}

static void dump_config(const pt_config *c)
{
    printf("{");
    for (size_t i = 0; i < c->n; i++) {
        const pt_scalar *v = &c->e[i].val;
        printf(i ? ", \"" : "\"");
        hex(c->e[i].key, strlen(c->e[i].key));
        printf("\": ");
        switch (v->type) {
        case PT_SCALAR_DOUBLE: {
            uint64_t u;
            memcpy(&u, &v->v.d, 8);
            printf("[\"double\", \"%016" PRIx64 "\"]", u);
            break;
        }
        case PT_SCALAR_SINT64: printf("[\"sint64\", \"%" PRId64 "\"]", v->v.i); break;
        case PT_SCALAR_UINT64: printf("[\"uint64\", \"%" PRIu64 "\"]", v->v.u); break;
        case PT_SCALAR_BOOL: printf("[\"bool\", \"%d\"]", v->v.b ? 1 : 0); break;
        case PT_SCALAR_STRING:
        case PT_SCALAR_BYTES:
            printf("[\"%s\", \"", v->type == PT_SCALAR_STRING ? "string" : "bytes");
            hex(v->v.s.ptr, v->v.s.len);
            printf("\"]");
            break;
        }
    }
    printf("}");
}

static int dump_params(const pnet_params_view *v)
{
    pt_params p = {0};
    char err[PT_ERRLEN];
    int rc = pnet_params_decode(v, &p, 0, err);
    if (rc) {
        printf("\"params_error\": \"%d\"", rc);
        return 0;
    }
    printf("\"tensor_type\": \"");
    hex(v->tensor_type.ptr, v->tensor_type.len);
    printf("\", \"tensors\": [");
    for (size_t i = 0; i < p.n; i++) {
        printf(i ? ", {\"shape\": [" : "{\"shape\": [");
        for (int d = 0; d < p.t[i].ndim; d++) printf(d ? ", %" PRId64 : "%" PRId64, p.t[i].shape[d]);
        printf("], \"f32\": \"");
        hex(p.t[i].data, p.t[i].numel * 4);
        printf("\"}");
    }
    printf("]");
    pt_params_free(&p);
    return 0;
}

static int dec(int server)
{
    size_t len;
    uint8_t *buf = read_all(stdin, &len);
    char err[PT_ERRLEN];
    int rc;
    if (server) {
        pnet_server_in m;
        rc = pnet_server_in_decode(buf, len, NULL, &m, err);
        if (rc) {
            printf("{\"error\": %d}\n", rc);
            fprintf(stderr, "%s\n", err);
        } else {
            printf("{\"type\": \"%s\", \"seconds\": \"%" PRId64 "\", \"config\": ",
                   pnet_smsg_name(m.type), m.seconds);
            dump_config(&m.config);
            if (m.type == PNET_SMSG_FIT || m.type == PNET_SMSG_EVALUATE) {
                printf(", ");
                dump_params(&m.params);
            }
            printf("}\n");
        }
        pnet_server_in_free(&m);
    } else {
        pnet_client_in m;
        rc = pnet_client_in_decode(buf, len, NULL, &m, err);
        if (rc) {
            printf("{\"error\": %d}\n", rc);
            fprintf(stderr, "%s\n", err);
        } else {
            uint32_t lb;
            memcpy(&lb, &m.loss, 4);
            printf("{\"type\": \"%s\", \"reason\": %d, \"code\": %d, \"message\": \"",
                   pnet_cmsg_name(m.type), m.reason, m.status_code);
            hex(m.status_message.ptr, m.status_message.len);
            printf("\", \"num_examples\": \"%" PRId64 "\", \"loss\": \"%08" PRIx32
                   "\", \"metrics\": ",
                   m.num_examples, lb);
            dump_config(&m.metrics);
            if (m.type == PNET_CMSG_FIT || m.type == PNET_CMSG_GET_PARAMETERS) {
                printf(", ");
                dump_params(&m.params);
            }
            printf("}\n");
        }
        pnet_client_in_free(&m);
    }
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "npy-write")) return npy_write(argc - 2, argv + 2);
    if (!strcmp(argv[1], "npy-read")) {
        unsigned fl = 0;
        if (argc > 2 && !strcmp(argv[2], "f32only")) fl = PNET_NPY_F32_ONLY;
        if (argc > 2 && !strcmp(argv[2], "overflow")) fl = PNET_NPY_ERR_OVERFLOW;
        return npy_read(fl);
    }
    if (!strcmp(argv[1], "enc-server") && argc > 2) return enc(1, argv[2]);
    if (!strcmp(argv[1], "enc-client") && argc > 2) return enc(0, argv[2]);
    if (!strcmp(argv[1], "dec-server")) return dec(1);
    if (!strcmp(argv[1], "dec-client")) return dec(0);
    return 2;
}
