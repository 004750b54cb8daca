/*
 * fuzz_strategy_opts.c - strategy configuration text, as command lines and
 * config files give it (strategies/options.c pst_option_set, then
 * pst_create). Input: the strategy name on the first line, then
 * "key=value" lines (a line without '=' is a key with an empty value).
 */
#include "fuzz.h"
#include "pst.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    const char *name = line ? line : "";
    pst_options o;
    pst_options_init(&o);
    char err[PT_ERRLEN];
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *eq = strchr(line, '=');
        const char *value = "";
        if (eq) {
            *eq = 0;
            value = eq + 1;
        }
        int rc = pst_option_set(&o, line, value, err);
        FZ_CHECK(rc == PT_OK || rc == PT_ERR_NOTFOUND || rc == PT_ERR_INVAL);
        if (rc) FZ_CHECK(err[0]);
    }
    pst_strategy *s = NULL;
    int rc = pst_create(&s, name, &o, err);
    if (rc == PT_OK) FZ_CHECK(s != NULL);
    else FZ_CHECK(s == NULL && err[0]);
    pst_free(s);
    free(text);
    return 0;
}
