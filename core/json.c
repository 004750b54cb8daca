/* json.c - parsing JSON a user or a peer wrote: one rule for repeated keys. */
#include "petal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *pt_json_repeated_key(const struct cJSON *o)
{
    if (!o || (!cJSON_IsObject(o) && !cJSON_IsArray(o))) return NULL;
    size_t n = 0;
    for (const cJSON *c = o->child; c; c = c->next) {
        const char *k = pt_json_repeated_key(c);
        if (k) return k;
        n++;
    }
    if (!cJSON_IsObject(o) || n < 2) return NULL;
    const char **keys = malloc(n * sizeof *keys);
    const char *dup = NULL;
    if (!keys) return "(out of memory)";
    n = 0;
    for (const cJSON *c = o->child; c; c = c->next) keys[n++] = c->string ? c->string : "";
    qsort(keys, n, sizeof *keys, cmp_key);
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(keys[i], keys[i - 1])) dup = keys[i];
    free(keys);
    return dup;
}

struct cJSON *pt_json_parse(const char *s, size_t n, char *err)
{
    cJSON *j = cJSON_ParseWithLength(s, n);
    if (!j) {
        pt_seterr(err, PT_ERR_FORMAT, "not valid JSON");
        return NULL;
    }
    const char *k = pt_json_repeated_key(j);
    if (k) {
        pt_seterr(err, PT_ERR_FORMAT, "the key '%.100s' appears twice in one object", k);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}
