/*
 * fuzz_client_msg.c - ClientMessage decoding, the server's view of what a
 * client sends (net/msg.c pnet_client_in_decode, Scalar maps in
 * net/scalar.c), then the tensors through pnet_params_decode, then a round
 * trip: what decoded is encoded again (pnet_client_out_size/pack) and must
 * decode to the same member, counts and numbers.
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

static void round_trip(const pnet_client_in *m, const pt_params *params)
{
    char msg[256], err[PT_ERRLEN];
    size_t ml = m->status_message.len < sizeof msg - 1 ? m->status_message.len : sizeof msg - 1;
    if (ml) memcpy(msg, m->status_message.ptr, ml);
    msg[ml] = 0;
    pnet_client_out o = {.type = m->type, .reason = m->reason, .status_code = m->status_code,
                         .status_message = m->status_message.len ? msg : NULL,
                         .params = params, .num_examples = m->num_examples, .loss = m->loss,
                         .metrics = &m->metrics};
    size_t size = 0, written = 0;
    if (pnet_client_out_size(&o, &size, err) != PT_OK) return;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return;
    FZ_CHECK(pnet_client_out_pack(&o, buf, size, &written, err) == PT_OK);
    FZ_CHECK(written == size);
    if (size > 0) FZ_CHECK(pnet_client_out_pack(&o, buf, size - 1, &written, err) != PT_OK);
    pnet_client_in back;
    FZ_CHECK(pnet_client_in_decode(buf, size, NULL, &back, err) == PT_OK);
    FZ_CHECK(back.type == m->type);
    switch (m->type) {
    case PNET_CMSG_DISCONNECT: FZ_CHECK(back.reason == m->reason); break;
    case PNET_CMSG_EVALUATE:
        FZ_CHECK(!memcmp(&back.loss, &m->loss, sizeof m->loss));
        /* fall through */
    case PNET_CMSG_FIT:
        FZ_CHECK(back.num_examples == m->num_examples);
        /* fall through */
    case PNET_CMSG_GET_PROPERTIES:
        FZ_CHECK(back.metrics.n == m->metrics.n);
        /* fall through */
    case PNET_CMSG_GET_PARAMETERS:
        FZ_CHECK(back.status_code == m->status_code);
        if (!memchr(msg, 0, ml)) FZ_CHECK(back.status_message.len == ml);
        break;
    default: break;
    }
    if (m->type == PNET_CMSG_GET_PARAMETERS || m->type == PNET_CMSG_FIT)
        FZ_CHECK(back.params.n == (params ? params->n : 0));
    pnet_client_in_free(&back);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pnet_client_in m;
    char err[PT_ERRLEN];
    if (pnet_client_in_decode(data, size, NULL, &m, err) != PT_OK) {
        FZ_CHECK(m.type == PNET_CMSG_NONE && m.metrics.n == 0 && m.params.n == 0);
        return 0;
    }
    (void)pnet_cmsg_name(m.type);
    for (size_t i = 0; i < m.params.n; i++) {
        const pnet_bytes *t = &m.params.tensors[i];
        FZ_CHECK(t->ptr >= data && t->len <= size && (size_t)(t->ptr - data) <= size - t->len);
    }
    for (size_t i = 0; i < m.metrics.n; i++) {
        FZ_CHECK(pt_config_get(&m.metrics, m.metrics.e[i].key) != NULL);
    }
    char fmt[512];
    pt_config_format(&m.metrics, fmt, sizeof fmt);
    pt_params p = {0};
    int prc = pnet_params_decode(&m.params, &p, 0, err);
    /* A status message not in the buffer or a message with more tensors
     * than fit in a round trip is left alone; the rest must survive. */
    if (prc == PT_OK && m.status_message.len < 255 && m.type != PNET_CMSG_NONE &&
        (unsigned)m.type <= PNET_CMSG_EVALUATE)
        round_trip(&m, (m.type == PNET_CMSG_GET_PARAMETERS || m.type == PNET_CMSG_FIT) &&
                               m.params.n ? &p : NULL);
    pt_params_free(&p);
    pnet_client_in_free(&m);
    return 0;
}
