/* xml_int.h - a small element tree built with expat (launcher-internal).
 * Names are local names (namespace URIs dropped), so S3/EC2/moto/s3rver
 * replies parse the same whatever namespace they declare. */
#ifndef PETAL_LAUNCHER_XML_INT_H
#define PETAL_LAUNCHER_XML_INT_H

#include "plaunch.h"

typedef struct pl_xml {
    char *name;
    pl_str text; /* character data directly inside this element */
    struct pl_xml *parent, *child, *last, *next;
} pl_xml;

/* Parse a complete document. Rejects DOCTYPE declarations, depth > 64 and
 * more than 200000 elements. *root is owned (pl_xml_free). PT_OK,
 * PT_ERR_FORMAT (with the expat message and line), PT_ERR_NOMEM. */
int pl_xml_parse(const char *buf, size_t n, pl_xml **root, char *err);
void pl_xml_free(pl_xml *root);
/* First child called name, or NULL. */
const pl_xml *pl_xml_child(const pl_xml *n, const char *name);
/* Next sibling called name, or NULL (iterate children of one kind). */
const pl_xml *pl_xml_next(const pl_xml *n, const char *name);
/* Walk "a/b/c" through first children; NULL when absent. */
const pl_xml *pl_xml_path(const pl_xml *n, const char *path);
/* Text of the element at path, or NULL. */
const char *pl_xml_text(const pl_xml *n, const char *path);
/* First descendant (depth-first, including n) called name, or NULL. */
const pl_xml *pl_xml_find(const pl_xml *n, const char *name);
/* Copy the text at path into dst (cap bytes). PT_OK, PT_ERR_NOTFOUND when
 * absent, PT_ERR_RANGE when too long (err names the field). */
int pl_xml_copy(const pl_xml *n, const char *path, char *dst, size_t cap, char *err);
/* Append the XML-escaped text s to out. */
int pl_xml_escape(pl_str *out, const char *s);

#endif
