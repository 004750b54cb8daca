/*
 * fuzz_aws_xml.c - the launcher's XML reader (launcher/xml.c, expat):
 * pl_xml_parse on the input, then every lookup the EC2/S3 reply code uses
 * (child/next/path/text/find/copy) over the tree, and the escaper on every
 * text node (escaped text must parse back to the same text).
 */
#include "fuzz.h"
#include "xml_int.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    return 0;
}

static const char *const paths[] = {
    "Code", "Message", "RequestId", "Errors/Error/Code", "instancesSet/item/instanceId",
    "reservationSet/item/instancesSet/item/instanceState/name", "Contents/Key",
    "NextContinuationToken", "IsTruncated", "imagesSet/item/imageId", "output", "groupId",
    "securityGroupInfo/item/groupId", "Deleted/Key", "Error/Key", "", "/", "a//b", NULL};

static void walk(const pl_xml *n, int depth, size_t *count)
{
    for (const pl_xml *c = n->child; c; c = c->next) {
        FZ_CHECK(c->parent == n && c->name);
        (*count)++;
        FZ_CHECK(pl_xml_child(n, c->name) != NULL);
        (void)pl_xml_next(c, c->name);
        const char *t = pl_str_c(&c->text);
        FZ_CHECK(strlen(t) <= c->text.len);
        /* Escape the text, wrap it, parse it back: same text when it had
         * no NUL bytes (a raw CR would come back as LF:
         * tests/fuzz/regress/aws_xml/escape_cr_roundtrip). */
        if (c->text.len < 4096 && strlen(t) == c->text.len) {
            pl_str doc = {0};
            pl_xml *back = NULL;
            int built = !pl_str_adds(&doc, "<r>") && !pl_xml_escape(&doc, t) &&
                        !pl_str_adds(&doc, "</r>");
            if (built && pl_xml_parse(doc.data, doc.len, &back, NULL) == PT_OK) {
                FZ_CHECK(!strcmp(pl_str_c(&back->text), t));
            }
            pl_xml_free(back);
            pl_str_free(&doc);
        }
        walk(c, depth + 1, count);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pl_xml *root = NULL;
    char err[PT_ERRLEN];
    if (pl_xml_parse((const char *)data, size, &root, err) != PT_OK) {
        FZ_CHECK(root == NULL && err[0]);
        return 0;
    }
    FZ_CHECK(root && root->name);
    size_t count = 1;
    walk(root, 0, &count);
    FZ_CHECK(count <= 200000);
    char buf[64];
    for (size_t i = 0; paths[i]; i++) {
        (void)pl_xml_path(root, paths[i]);
        (void)pl_xml_text(root, paths[i]);
        (void)pl_xml_find(root, paths[i]);
        (void)pl_xml_copy(root, paths[i], buf, sizeof buf, err);
    }
    pl_xml_free(root);
    return 0;
}
