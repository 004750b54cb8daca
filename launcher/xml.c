/* xml.c - expat-based element tree for AWS responses. */
#include "xml_int.h"

#include <expat.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_NODES 200000

typedef struct pstate {
    XML_Parser p;
    pl_xml *root, *cur;
    int depth;
    size_t nodes;
    int rc;
    const char *why;
} pstate;

static void stop(pstate *s, int rc, const char *why)
{
    if (!s->rc) {
        s->rc = rc;
        s->why = why;
    }
    XML_StopParser(s->p, XML_FALSE);
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    pstate *s = ud;
    if (s->rc) return;
    if (++s->depth > MAX_DEPTH) return stop(s, PT_ERR_FORMAT, "nesting too deep");
    if (++s->nodes > MAX_NODES) return stop(s, PT_ERR_FORMAT, "too many elements");
    const char *local = strrchr(name, '|');
    local = local ? local + 1 : name;
    pl_xml *n = calloc(1, sizeof *n);
    if (!n || !(n->name = strdup(local))) {
        free(n);
        return stop(s, PT_ERR_NOMEM, "out of memory");
    }
    n->parent = s->cur;
    if (s->cur) {
        if (s->cur->last)
            s->cur->last->next = n;
        else
            s->cur->child = n;
        s->cur->last = n;
    } else if (!s->root) {
        s->root = n;
    } else {
        free(n->name);
        free(n);
        return stop(s, PT_ERR_FORMAT, "several root elements");
    }
    s->cur = n;
}

static void on_end(void *ud, const XML_Char *name)
{
    (void)name;
    pstate *s = ud;
    if (s->rc || !s->cur) return;
    s->depth--;
    s->cur = s->cur->parent;
}

static void on_text(void *ud, const XML_Char *t, int len)
{
    pstate *s = ud;
    if (s->rc || !s->cur || len <= 0) return;
    if (pl_str_add(&s->cur->text, t, (size_t)len)) stop(s, PT_ERR_NOMEM, "out of memory");
}

static void on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                       const XML_Char *pubid, int has_internal)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal;
    stop(ud, PT_ERR_FORMAT, "DOCTYPE not allowed");
}

int pl_xml_parse(const char *buf, size_t n, pl_xml **root, char *err)
{
    *root = NULL;
    if (n > (size_t)0x7fffffff) return pt_seterr(err, PT_ERR_RANGE, "XML document too large");
    pstate s;
    memset(&s, 0, sizeof s);
    s.p = XML_ParserCreateNS(NULL, '|');
    if (!s.p) return pt_seterr(err, PT_ERR_NOMEM, "XML: out of memory");
    XML_SetUserData(s.p, &s);
    XML_SetElementHandler(s.p, on_start, on_end);
    XML_SetCharacterDataHandler(s.p, on_text);
    XML_SetStartDoctypeDeclHandler(s.p, on_doctype);
    enum XML_Status st = XML_Parse(s.p, buf ? buf : "", (int)n, XML_TRUE);
    int rc = s.rc;
    if (!rc && st != XML_STATUS_OK) {
        rc = pt_seterr(err, PT_ERR_FORMAT, "XML: %s at line %lu",
                       XML_ErrorString(XML_GetErrorCode(s.p)),
                       (unsigned long)XML_GetCurrentLineNumber(s.p));
    } else if (rc) {
        pt_seterr(err, rc, "XML: %s", s.why);
    } else if (!s.root) {
        rc = pt_seterr(err, PT_ERR_FORMAT, "XML: empty document");
    }
    XML_ParserFree(s.p);
    if (rc) {
        pl_xml_free(s.root);
        return rc;
    }
    *root = s.root;
    return PT_OK;
}

void pl_xml_free(pl_xml *n)
{
    /* iterative over siblings, recursive over depth (bounded by MAX_DEPTH) */
    while (n) {
        pl_xml *next = n->next;
        pl_xml_free(n->child);
        free(n->name);
        pl_str_free(&n->text);
        free(n);
        n = next;
    }
}

const pl_xml *pl_xml_child(const pl_xml *n, const char *name)
{
    for (const pl_xml *c = n ? n->child : NULL; c; c = c->next)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

const pl_xml *pl_xml_next(const pl_xml *n, const char *name)
{
    for (const pl_xml *c = n ? n->next : NULL; c; c = c->next)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

const pl_xml *pl_xml_path(const pl_xml *n, const char *path)
{
    char part[128];
    while (n && *path) {
        const char *sl = strchr(path, '/');
        size_t len = sl ? (size_t)(sl - path) : strlen(path);
        if (len >= sizeof part) return NULL;
        memcpy(part, path, len);
        part[len] = 0;
        n = pl_xml_child(n, part);
        path += len + (sl ? 1 : 0);
    }
    return n;
}

const char *pl_xml_text(const pl_xml *n, const char *path)
{
    const pl_xml *e = pl_xml_path(n, path);
    return e ? pl_str_c(&e->text) : NULL;
}

const pl_xml *pl_xml_find(const pl_xml *n, const char *name)
{
    if (!n) return NULL;
    if (!strcmp(n->name, name)) return n;
    for (const pl_xml *c = n->child; c; c = c->next) {
        const pl_xml *f = pl_xml_find(c, name);
        if (f) return f;
    }
    return NULL;
}

int pl_xml_copy(const pl_xml *n, const char *path, char *dst, size_t cap, char *err)
{
    const char *t = pl_xml_text(n, path);
    if (!t) return pt_seterr(err, PT_ERR_NOTFOUND, "response lacks <%s>", path);
    size_t l = strlen(t);
    if (l >= cap) return pt_seterr(err, PT_ERR_RANGE, "response field <%s> too long (%zu)", path, l);
    memcpy(dst, t, l + 1);
    return PT_OK;
}

int pl_xml_escape(pl_str *out, const char *s)
{
    for (; *s; s++) {
        int rc;
        switch (*s) {
        case '<': rc = pl_str_adds(out, "&lt;"); break;
        case '>': rc = pl_str_adds(out, "&gt;"); break;
        case '&': rc = pl_str_adds(out, "&amp;"); break;
        case '"': rc = pl_str_adds(out, "&quot;"); break;
        case '\'': rc = pl_str_adds(out, "&apos;"); break;
        /* XML parsers normalise a raw CR (and CRLF) to LF: keep it as a reference */
        case '\r': rc = pl_str_adds(out, "&#13;"); break;
        default: rc = pl_str_add(out, s, 1);
        }
        if (rc) return rc;
    }
    return PT_OK;
}
