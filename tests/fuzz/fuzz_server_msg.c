/*
 * fuzz_server_msg.c - ServerMessage decoding, the client's view of what a
 * server sends (net/msg.c pnet_server_in_decode, Scalar maps in
 * net/scalar.c), the tensors through pnet_params_decode, then a round trip
 * through pnet_server_out_size/pack and a second decode.
 */
#include "fuzz.h"
#include "pnet.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    return 0;
}

static void round_trip(const pnet_server_in *m, const pt_params *params)
{
    char err[PT_ERRLEN];
    pnet_server_out o = {.type = m->type, .seconds = m->seconds, .params = params,
                         .config = &m->config};
    size_t size = 0, written = 0;
    if (pnet_server_out_size(&o, &size, err) != PT_OK) return;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return;
    FZ_CHECK(pnet_server_out_pack(&o, buf, size, &written, err) == PT_OK);
    FZ_CHECK(written == size);
    if (size > 0) FZ_CHECK(pnet_server_out_pack(&o, buf, size - 1, &written, err) != PT_OK);
    pnet_server_in back;
    FZ_CHECK(pnet_server_in_decode(buf, size, NULL, &back, err) == PT_OK);
    FZ_CHECK(back.type == m->type);
    if (m->type == PNET_SMSG_RECONNECT) FZ_CHECK(back.seconds == m->seconds);
    else FZ_CHECK(back.config.n == m->config.n);
    if (m->type == PNET_SMSG_FIT || m->type == PNET_SMSG_EVALUATE) {
        FZ_CHECK(back.params.n == (params ? params->n : 0));
        pt_params q = {0};
        if (params) {
            FZ_CHECK(pt_params_init_like(&q, params) == PT_OK);
            FZ_CHECK(pnet_params_decode(&back.params, &q, 0, err) == PT_OK);
            FZ_CHECK(q.total == params->total);
            FZ_CHECK(!q.total || !memcmp(q.buf, params->buf, q.total * sizeof(float)));
            pt_params_free(&q);
        }
    }
    pnet_server_in_free(&back);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pnet_server_in m;
    char err[PT_ERRLEN];
    if (pnet_server_in_decode(data, size, NULL, &m, err) != PT_OK) {
        FZ_CHECK(m.type == PNET_SMSG_NONE && m.config.n == 0 && m.params.n == 0);
        return 0;
    }
    (void)pnet_smsg_name(m.type);
    for (size_t i = 0; i < m.params.n; i++) {
        const pnet_bytes *t = &m.params.tensors[i];
        FZ_CHECK(t->ptr >= data && t->len <= size && (size_t)(t->ptr - data) <= size - t->len);
    }
    char fmt[512];
    pt_config_format(&m.config, fmt, sizeof fmt);
    double num;
    for (size_t i = 0; i < m.config.n; i++)
        (void)pt_config_get_number(&m.config, m.config.e[i].key, &num);
    pt_params p = {0};
    int prc = pnet_params_decode(&m.params, &p, 0, err);
    if (prc == PT_OK && m.type != PNET_SMSG_NONE && (unsigned)m.type <= PNET_SMSG_EVALUATE)
        round_trip(&m, m.params.n ? &p : NULL);
    pt_params_free(&p);
    pnet_server_in_free(&m);
    return 0;
}
