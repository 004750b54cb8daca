/* ec2.c - EC2 Query API calls and SSM GetParameter. */
#include "aws_int.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOMEM(err) pt_seterr(err, PT_ERR_NOMEM, "out of memory")

static int valid_id(const char *s, const char *prefix)
{
    size_t pl = strlen(prefix), l = strlen(s);
    if (l <= pl || l > 31 || strncmp(s, prefix, pl)) return 0;
    for (size_t i = pl; i < l; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int add_tags(pl_str *f, int spec, const char *type, const pl_tag *tags, size_t n)
{
    char name[96];
    snprintf(name, sizeof name, "TagSpecification.%d.ResourceType", spec);
    if (pl_form_add(f, name, type)) return PT_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "TagSpecification.%d.Tag.%zu.Key", spec, i + 1);
        if (pl_form_add(f, name, tags[i].key)) return PT_ERR_NOMEM;
        snprintf(name, sizeof name, "TagSpecification.%d.Tag.%zu.Value", spec, i + 1);
        if (pl_form_add(f, name, tags[i].value)) return PT_ERR_NOMEM;
    }
    return PT_OK;
}

int pl_ec2_create_security_group(pl_aws *a, const char *name, const char *desc,
                                 const char *vpc_id, const pl_tag *tags, size_t n_tags,
                                 char group_id[32], char *err)
{
    pl_str f = {0};
    pl_xml *doc = NULL;
    group_id[0] = 0;
    if (!name || !name[0] || strlen(name) > 255 || !desc || strlen(desc) > 255)
        return pt_seterr(err, PT_ERR_INVAL, "security group name/description invalid");
    if (pl_form_add(&f, "GroupName", name) || pl_form_add(&f, "GroupDescription", desc) ||
        (vpc_id && pl_form_add(&f, "VpcId", vpc_id)) ||
        (n_tags && add_tags(&f, 1, "security-group", tags, n_tags))) {
        pl_str_free(&f);
        return NOMEM(err);
    }
    int rc = pl_ec2_call(a, "CreateSecurityGroup", f.data, &doc, NULL, err);
    pl_str_free(&f);
    if (!rc) {
        rc = pl_xml_copy(doc, "groupId", group_id, 32, err);
        if (!rc && !valid_id(group_id, "sg-"))
            rc = pt_seterr(err, PT_ERR_PROTO, "CreateSecurityGroup: bad group id '%s'", group_id);
    }
    pl_xml_free(doc);
    return rc;
}

int pl_ec2_authorize_ingress(pl_aws *a, const char *group_id, int from_port, int to_port,
                             const char *source_group, const char *cidr, char *err)
{
    if (from_port < 0 || to_port > 65535 || from_port > to_port)
        return pt_seterr(err, PT_ERR_RANGE, "ingress ports %d..%d invalid", from_port, to_port);
    if (!source_group == !cidr)
        return pt_seterr(err, PT_ERR_INVAL, "ingress needs a source group or a CIDR");
    pl_str f = {0};
    char fp[16], tp[16];
    snprintf(fp, sizeof fp, "%d", from_port);
    snprintf(tp, sizeof tp, "%d", to_port);
    int rc = pl_form_add(&f, "GroupId", group_id);
    if (!rc) rc = pl_form_add(&f, "IpPermissions.1.IpProtocol", "tcp");
    if (!rc) rc = pl_form_add(&f, "IpPermissions.1.FromPort", fp);
    if (!rc) rc = pl_form_add(&f, "IpPermissions.1.ToPort", tp);
    if (!rc && source_group) rc = pl_form_add(&f, "IpPermissions.1.Groups.1.GroupId", source_group);
    if (!rc && cidr) rc = pl_form_add(&f, "IpPermissions.1.IpRanges.1.CidrIp", cidr);
    if (rc) {
        pl_str_free(&f);
        return NOMEM(err);
    }
    pl_xml *doc = NULL;
    pl_awserr ae;
    /* right after CreateSecurityGroup the group may not be visible yet
     * (eventual consistency): retry InvalidGroup.NotFound for a while */
    for (int attempt = 0;; attempt++) {
        rc = pl_ec2_call(a, "AuthorizeSecurityGroupIngress", f.data, &doc, &ae, err);
        if (rc != PT_ERR_NOTFOUND || attempt >= 5) break;
        pt_sleep(0.5 * (1 << attempt), NULL);
    }
    pl_str_free(&f);
    if (rc == PT_ERR_AWS && !strcmp(ae.code, "InvalidPermission.Duplicate")) rc = PT_OK;
    if (!rc && doc) {
        const char *ret = pl_xml_text(doc, "return");
        if (ret && strcmp(ret, "true"))
            rc = pt_seterr(err, PT_ERR_AWS, "AuthorizeSecurityGroupIngress returned %s", ret);
    }
    pl_xml_free(doc);
    return rc;
}

int pl_ec2_delete_security_group(pl_aws *a, const char *group_id, double wait_s, char *err)
{
    double t0 = pt_now(), delay = 2;
    for (;;) {
        pl_str f = {0};
        if (pl_form_add(&f, "GroupId", group_id)) return NOMEM(err);
        pl_xml *doc = NULL;
        pl_awserr ae;
        int rc = pl_ec2_call(a, "DeleteSecurityGroup", f.data, &doc, &ae, err);
        pl_str_free(&f);
        pl_xml_free(doc);
        if (rc == PT_ERR_NOTFOUND) return PT_OK;
        if (rc != PT_ERR_AWS || strcmp(ae.code, "DependencyViolation") ||
            pt_now() - t0 + delay > wait_s)
            return rc;
        pt_sleep(delay, NULL);
        if (delay < 15) delay *= 1.5;
    }
}

int pl_ec2_find_security_groups(pl_aws *a, const char *tag_key, const char *tag_value,
                                char (**ids)[32], size_t *n, char *err)
{
    *ids = NULL;
    *n = 0;
    pl_str f = {0};
    char fname[160];
    snprintf(fname, sizeof fname, "tag:%s", tag_key);
    if (pl_form_add(&f, "Filter.1.Name", fname) || pl_form_add(&f, "Filter.1.Value.1", tag_value)) {
        pl_str_free(&f);
        return NOMEM(err);
    }
    pl_xml *doc = NULL;
    int rc = pl_ec2_call(a, "DescribeSecurityGroups", f.data, &doc, NULL, err);
    pl_str_free(&f);
    if (rc) return rc;
    const pl_xml *set = pl_xml_child(doc, "securityGroupInfo");
    size_t cnt = 0;
    for (const pl_xml *it = pl_xml_child(set, "item"); it; it = pl_xml_next(it, "item")) cnt++;
    if (cnt) {
        *ids = calloc(cnt, sizeof **ids);
        if (!*ids) rc = NOMEM(err);
    }
    for (const pl_xml *it = pl_xml_child(set, "item"); it && !rc; it = pl_xml_next(it, "item")) {
        rc = pl_xml_copy(it, "groupId", (*ids)[*n], 32, err);
        if (!rc && !valid_id((*ids)[*n], "sg-"))
            rc = pt_seterr(err, PT_ERR_PROTO, "DescribeSecurityGroups: bad id");
        if (!rc) (*n)++;
    }
    if (rc) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    pl_xml_free(doc);
    return rc;
}

static int parse_instance(const pl_xml *it, pl_instance *o, const char *op, char *err)
{
    memset(o, 0, sizeof *o);
    int rc = pl_xml_copy(it, "instanceId", o->id, sizeof o->id, err);
    if (rc || !valid_id(o->id, "i-"))
        return pt_seterr(err, PT_ERR_PROTO, "%s: bad or missing instanceId", op);
    const pl_xml *st = pl_xml_child(it, "instanceState");
    if (!st) st = pl_xml_child(it, "currentState");
    const char *code = st ? pl_xml_text(st, "code") : NULL;
    const char *name = st ? pl_xml_text(st, "name") : NULL;
    char *end = NULL;
    long cv = code ? strtol(code, &end, 10) : -1;
    if (!code || !name || !end || *end || cv < 0 || cv > 65535 || strlen(name) >= sizeof o->state)
        return pt_seterr(err, PT_ERR_PROTO, "%s: instance %s has no valid state", op, o->id);
    o->state_code = (int)(cv & 0xff);
    snprintf(o->state, sizeof o->state, "%s", name);
    const char *ip = pl_xml_text(it, "privateIpAddress");
    if (ip && strlen(ip) < sizeof o->private_ip) snprintf(o->private_ip, sizeof o->private_ip, "%s", ip);
    const char *img = pl_xml_text(it, "imageId");
    if (img && strlen(img) < sizeof o->image_id) snprintf(o->image_id, sizeof o->image_id, "%s", img);
    const char *ty = pl_xml_text(it, "instanceType");
    if (ty && strlen(ty) < sizeof o->type) snprintf(o->type, sizeof o->type, "%s", ty);
    const char *li = pl_xml_text(it, "amiLaunchIndex");
    o->launch_index = -1;
    if (li) {
        long v = strtol(li, &end, 10);
        if (end != li && !*end && v >= 0 && v < 100000) o->launch_index = (int)v;
    }
    return PT_OK;
}

static int parse_instances(const pl_xml *set, pl_instance **out, size_t *n, const char *op,
                           char *err)
{
    size_t cnt = 0;
    for (const pl_xml *it = pl_xml_child(set, "item"); it; it = pl_xml_next(it, "item")) cnt++;
    pl_instance *v = cnt ? realloc(*out, (*n + cnt) * sizeof *v) : *out;
    if (cnt && !v) return NOMEM(err);
    *out = v;
    for (const pl_xml *it = pl_xml_child(set, "item"); it; it = pl_xml_next(it, "item")) {
        int rc = parse_instance(it, &v[*n], op, err);
        if (rc) return rc;
        (*n)++;
    }
    return PT_OK;
}

int pl_ec2_run_instances(pl_aws *a, const pl_run_opts *o, pl_instance **out, size_t *n, char *err)
{
    *out = NULL;
    *n = 0;
    if (!o->image_id || !o->instance_type || o->count < 1 || o->count > 100 ||
        !o->security_group_id)
        return pt_seterr(err, PT_ERR_INVAL, "RunInstances: image, type, count, group required");
    size_t ud_len = o->user_data ? strlen(o->user_data) : 0;
    if (ud_len > 16383)
        return pt_seterr(err, PT_ERR_RANGE, "user-data is %zu bytes; EC2 allows 16383", ud_len);
    pl_str f = {0}, b64 = {0};
    char cnt[16];
    snprintf(cnt, sizeof cnt, "%d", o->count);
    int rc = pl_form_add(&f, "ImageId", o->image_id);
    if (!rc) rc = pl_form_add(&f, "InstanceType", o->instance_type);
    if (!rc) rc = pl_form_add(&f, "MinCount", cnt);
    if (!rc) rc = pl_form_add(&f, "MaxCount", cnt);
    if (!rc) rc = pl_form_add(&f, "SecurityGroupId.1", o->security_group_id);
    if (!rc && o->subnet_id && o->subnet_id[0]) rc = pl_form_add(&f, "SubnetId", o->subnet_id);
    if (!rc) rc = pl_form_add(&f, "InstanceInitiatedShutdownBehavior", "terminate");
    if (!rc) rc = pl_form_add(&f, "MetadataOptions.HttpTokens", "required");
    if (!rc) rc = pl_form_add(&f, "MetadataOptions.HttpEndpoint", "enabled");
    if (!rc && ud_len) {
        rc = pl_base64(&b64, o->user_data, ud_len);
        if (!rc) rc = pl_form_add(&f, "UserData", b64.data);
    }
    if (!rc && o->key_name && o->key_name[0]) rc = pl_form_add(&f, "KeyName", o->key_name);
    if (!rc && o->instance_profile && o->instance_profile[0])
        rc = pl_form_add(&f, "IamInstanceProfile.Name", o->instance_profile);
    if (!rc && o->client_token && o->client_token[0])
        rc = pl_form_add(&f, "ClientToken", o->client_token);
    if (!rc && o->root_gb > 0 && o->root_device) {
        char gb[16];
        snprintf(gb, sizeof gb, "%d", o->root_gb);
        rc = pl_form_add(&f, "BlockDeviceMapping.1.DeviceName", o->root_device);
        if (!rc) rc = pl_form_add(&f, "BlockDeviceMapping.1.Ebs.VolumeSize", gb);
        if (!rc) rc = pl_form_add(&f, "BlockDeviceMapping.1.Ebs.VolumeType", "gp3");
        if (!rc) rc = pl_form_add(&f, "BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true");
    }
    if (!rc && o->n_tags) {
        rc = add_tags(&f, 1, "instance", o->tags, o->n_tags);
        if (!rc) rc = add_tags(&f, 2, "volume", o->tags, o->n_tags);
    }
    pl_str_free(&b64);
    if (rc) {
        pl_str_free(&f);
        return NOMEM(err);
    }
    pl_xml *doc = NULL;
    pl_awserr ae;
    /* a just-created group may not be visible yet; with a ClientToken the
     * retry cannot launch twice */
    for (int attempt = 0;; attempt++) {
        rc = pl_ec2_call(a, "RunInstances", f.data, &doc, &ae, err);
        if (rc != PT_ERR_NOTFOUND || strcmp(ae.code, "InvalidGroup.NotFound") || attempt >= 5)
            break;
        pt_sleep(0.5 * (1 << attempt), NULL);
    }
    pl_str_free(&f);
    if (!rc) rc = parse_instances(pl_xml_child(doc, "instancesSet"), out, n, "RunInstances", err);
    if (!rc && *n != (size_t)o->count)
        rc = pt_seterr(err, PT_ERR_PROTO, "RunInstances returned %zu instances, asked %d", *n,
                       o->count);
    pl_xml_free(doc);
    if (rc) {
        /* the caller cannot clean up what it does not know about: keep ids */
        if (!*n) {
            free(*out);
            *out = NULL;
        }
    }
    return rc;
}

int pl_ec2_describe_instances(pl_aws *a, const char *const *ids, size_t n_ids,
                              const char *tag_key, const char *tag_value, pl_instance **out,
                              size_t *n, char *err)
{
    *out = NULL;
    *n = 0;
    char token[2048] = "";
    for (int page = 0; page < 1000; page++) {
        pl_str f = {0};
        char name[64];
        int rc = PT_OK;
        for (size_t i = 0; i < n_ids && !rc; i++) {
            snprintf(name, sizeof name, "InstanceId.%zu", i + 1);
            rc = pl_form_add(&f, name, ids[i]);
        }
        if (!rc && tag_key) {
            char tk[160];
            snprintf(tk, sizeof tk, "tag:%s", tag_key);
            rc = pl_form_add(&f, "Filter.1.Name", tk);
            if (!rc) rc = pl_form_add(&f, "Filter.1.Value.1", tag_value);
            if (!rc) rc = pl_form_add(&f, "Filter.2.Name", "instance-state-name");
            const char *states[] = {"pending", "running", "shutting-down", "stopping", "stopped"};
            for (int i = 0; i < 5 && !rc; i++) {
                snprintf(name, sizeof name, "Filter.2.Value.%d", i + 1);
                rc = pl_form_add(&f, name, states[i]);
            }
        }
        if (!rc && token[0]) rc = pl_form_add(&f, "NextToken", token);
        if (rc) {
            pl_str_free(&f);
            return NOMEM(err);
        }
        pl_xml *doc = NULL;
        rc = pl_ec2_call(a, "DescribeInstances", f.data, &doc, NULL, err);
        pl_str_free(&f);
        if (!rc) {
            const pl_xml *rs = pl_xml_child(doc, "reservationSet");
            for (const pl_xml *it = pl_xml_child(rs, "item"); it && !rc;
                 it = pl_xml_next(it, "item"))
                rc = parse_instances(pl_xml_child(it, "instancesSet"), out, n,
                                     "DescribeInstances", err);
            const char *nt = pl_xml_text(doc, "nextToken");
            token[0] = 0;
            if (!rc && nt && nt[0]) {
                if (strlen(nt) >= sizeof token)
                    rc = pt_seterr(err, PT_ERR_PROTO, "DescribeInstances: nextToken too long");
                else
                    snprintf(token, sizeof token, "%s", nt);
            }
        }
        pl_xml_free(doc);
        if (rc) {
            free(*out);
            *out = NULL;
            *n = 0;
            return rc;
        }
        if (!token[0]) return PT_OK;
    }
    return pt_seterr(err, PT_ERR_PROTO, "DescribeInstances: too many pages");
}

int pl_ec2_instance_status(pl_aws *a, pl_instance *inst, size_t n, char *err)
{
    pl_str f = {0};
    int rc = pl_form_add(&f, "IncludeAllInstances", "true");
    for (size_t i = 0; i < n && !rc; i++) {
        char name[64];
        snprintf(name, sizeof name, "InstanceId.%zu", i + 1);
        rc = pl_form_add(&f, name, inst[i].id);
    }
    if (rc) {
        pl_str_free(&f);
        return NOMEM(err);
    }
    pl_xml *doc = NULL;
    rc = pl_ec2_call(a, "DescribeInstanceStatus", f.data, &doc, NULL, err);
    pl_str_free(&f);
    if (rc) return rc;
    const pl_xml *set = pl_xml_child(doc, "instanceStatusSet");
    for (const pl_xml *it = pl_xml_child(set, "item"); it; it = pl_xml_next(it, "item")) {
        const char *id = pl_xml_text(it, "instanceId");
        const char *ss = pl_xml_text(it, "systemStatus/status");
        const char *is = pl_xml_text(it, "instanceStatus/status");
        const char *st = pl_xml_text(it, "instanceState/name");
        if (!id) {
            rc = pt_seterr(err, PT_ERR_PROTO, "DescribeInstanceStatus: item without instanceId");
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(inst[i].id, id)) continue;
            snprintf(inst[i].sys_status, sizeof inst[i].sys_status, "%s", ss ? ss : "");
            snprintf(inst[i].inst_status, sizeof inst[i].inst_status, "%s", is ? is : "");
            if (st && strlen(st) < sizeof inst[i].state)
                snprintf(inst[i].state, sizeof inst[i].state, "%s", st);
        }
    }
    pl_xml_free(doc);
    return rc;
}

int pl_ec2_terminate_instances(pl_aws *a, const char *const *ids, size_t n, char *err)
{
    if (!n) return PT_OK;
    pl_str f = {0};
    int rc = PT_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        char name[64];
        snprintf(name, sizeof name, "InstanceId.%zu", i + 1);
        rc = pl_form_add(&f, name, ids[i]);
    }
    if (rc) {
        pl_str_free(&f);
        return NOMEM(err);
    }
    pl_xml *doc = NULL;
    rc = pl_ec2_call(a, "TerminateInstances", f.data, &doc, NULL, err);
    pl_str_free(&f);
    if (!rc) {
        pl_instance *v = NULL;
        size_t cnt = 0;
        rc = parse_instances(pl_xml_child(doc, "instancesSet"), &v, &cnt, "TerminateInstances",
                             err);
        free(v);
    }
    pl_xml_free(doc);
    return rc;
}

int pl_ec2_console_output(pl_aws *a, const char *id, pl_str *out, char *err)
{
    pl_xml *doc = NULL;
    pl_awserr ae;
    int rc = PT_OK;
    /* Latest=true: the newest output (the agent's lines, not the boot's);
     * instance types without it answer UnsupportedOperation */
    for (int latest = 1; latest >= 0; latest--) {
        pl_str f = {0};
        if (pl_form_add(&f, "InstanceId", id) || (latest && pl_form_add(&f, "Latest", "true")))
            rc = NOMEM(err);
        if (!rc) rc = pl_ec2_call(a, "GetConsoleOutput", f.data, &doc, &ae, err);
        pl_str_free(&f);
        if (!(rc == PT_ERR_AWS && latest && !strcmp(ae.code, "UnsupportedOperation"))) break;
        rc = PT_OK;
    }
    if (!rc) {
        const char *b = pl_xml_text(doc, "output");
        if (b && b[0]) {
            /* base64 decode with OpenSSL's EVP_DecodeBlock via pl_base64's sibling */
            size_t l = strlen(b);
            unsigned char *buf = malloc(l + 4);
            if (!buf) {
                rc = NOMEM(err);
            } else {
                size_t o = 0;
                unsigned acc = 0;
                int bits = 0;
                for (size_t i = 0; i < l; i++) {
                    char c = b[i];
                    int v = (c >= 'A' && c <= 'Z')   ? c - 'A'
                            : (c >= 'a' && c <= 'z') ? c - 'a' + 26
                            : (c >= '0' && c <= '9') ? c - '0' + 52
                            : c == '+'               ? 62
                            : c == '/'               ? 63
                                                     : -1;
                    if (v < 0) continue; /* padding, whitespace */
                    acc = (acc << 6) | (unsigned)v;
                    bits += 6;
                    if (bits >= 8) {
                        bits -= 8;
                        buf[o++] = (unsigned char)(acc >> bits);
                    }
                }
                if (pl_str_add(out, buf, o)) rc = NOMEM(err);
                free(buf);
            }
        }
    }
    pl_xml_free(doc);
    return rc;
}

int pl_ec2_count_live(pl_aws *a, int *n, int *vcpus, char *err)
{
    *n = *vcpus = 0;
    char token[2048] = "";
    for (int page = 0; page < 1000; page++) {
        pl_str f = {0};
        int rc = pl_form_add(&f, "Filter.1.Name", "instance-state-name");
        if (!rc) rc = pl_form_add(&f, "Filter.1.Value.1", "pending");
        if (!rc) rc = pl_form_add(&f, "Filter.1.Value.2", "running");
        if (!rc) rc = pl_form_add(&f, "MaxResults", "1000");
        if (!rc && token[0]) rc = pl_form_add(&f, "NextToken", token);
        if (rc) {
            pl_str_free(&f);
            return NOMEM(err);
        }
        pl_xml *doc = NULL;
        pl_instance *v = NULL;
        size_t nv = 0;
        rc = pl_ec2_call(a, "DescribeInstances", f.data, &doc, NULL, err);
        pl_str_free(&f);
        const pl_xml *rs = rc ? NULL : pl_xml_child(doc, "reservationSet");
        for (const pl_xml *it = pl_xml_child(rs, "item"); it && !rc; it = pl_xml_next(it, "item"))
            rc = parse_instances(pl_xml_child(it, "instancesSet"), &v, &nv, "DescribeInstances",
                                 err);
        for (size_t i = 0; i < nv && !rc; i++) {
            if (*n >= 1000000) rc = pt_seterr(err, PT_ERR_PROTO, "DescribeInstances: too many");
            (*n)++;
            *vcpus += pl_instance_vcpus(v[i].type);
        }
        free(v);
        const char *nt = rc ? NULL : pl_xml_text(doc, "nextToken");
        token[0] = 0;
        if (nt && nt[0]) {
            if (strlen(nt) >= sizeof token)
                rc = pt_seterr(err, PT_ERR_PROTO, "DescribeInstances: nextToken too long");
            else
                snprintf(token, sizeof token, "%s", nt);
        }
        pl_xml_free(doc);
        if (rc) return rc;
        if (!token[0]) return PT_OK;
    }
    return pt_seterr(err, PT_ERR_PROTO, "DescribeInstances: too many pages");
}

int pl_ec2_subnet_vpc(pl_aws *a, const char *subnet_id, char vpc[32], char *err)
{
    vpc[0] = 0;
    if (!subnet_id || !valid_id(subnet_id, "subnet-"))
        return pt_seterr(err, PT_ERR_INVAL, "--subnet-id must look like subnet-0123abcd");
    pl_str f = {0};
    if (pl_form_add(&f, "SubnetId.1", subnet_id)) return NOMEM(err);
    pl_xml *doc = NULL;
    int rc = pl_ec2_call(a, "DescribeSubnets", f.data, &doc, NULL, err);
    pl_str_free(&f);
    if (!rc) {
        const pl_xml *it = pl_xml_path(doc, "subnetSet/item");
        const char *id = it ? pl_xml_text(it, "subnetId") : NULL;
        const char *v = it ? pl_xml_text(it, "vpcId") : NULL;
        if (!id || strcmp(id, subnet_id) || !v || !valid_id(v, "vpc-"))
            rc = pt_seterr(err, PT_ERR_PROTO, "DescribeSubnets %s: no such subnet in the reply",
                           subnet_id);
        else
            snprintf(vpc, 32, "%s", v);
    }
    pl_xml_free(doc);
    return rc;
}

int pl_ec2_newest_image(pl_aws *a, const char *owner, const char *name_pattern, char ami[32],
                        char *err)
{
    ami[0] = 0;
    pl_str f = {0};
    int rc = pl_form_add(&f, "Owner.1", owner);
    if (!rc) rc = pl_form_add(&f, "Filter.1.Name", "name");
    if (!rc) rc = pl_form_add(&f, "Filter.1.Value.1", name_pattern);
    if (!rc) rc = pl_form_add(&f, "Filter.2.Name", "architecture");
    if (!rc) rc = pl_form_add(&f, "Filter.2.Value.1", "x86_64");
    if (!rc) rc = pl_form_add(&f, "Filter.3.Name", "state");
    if (!rc) rc = pl_form_add(&f, "Filter.3.Value.1", "available");
    if (rc) {
        pl_str_free(&f);
        return NOMEM(err);
    }
    pl_xml *doc = NULL;
    rc = pl_ec2_call(a, "DescribeImages", f.data, &doc, NULL, err);
    pl_str_free(&f);
    if (rc) return rc;
    char best_date[64] = "";
    const pl_xml *set = pl_xml_child(doc, "imagesSet");
    for (const pl_xml *it = pl_xml_child(set, "item"); it; it = pl_xml_next(it, "item")) {
        const char *id = pl_xml_text(it, "imageId");
        const char *d = pl_xml_text(it, "creationDate");
        if (!id || !valid_id(id, "ami-")) continue;
        if (!d) d = "";
        if (!ami[0] || strcmp(d, best_date) > 0) {
            snprintf(ami, 32, "%s", id);
            snprintf(best_date, sizeof best_date, "%s", d);
        }
    }
    pl_xml_free(doc);
    if (!ami[0])
        return pt_seterr(err, PT_ERR_NOTFOUND, "DescribeImages: no image owned by %s matches %s",
                         owner, name_pattern);
    return PT_OK;
}

int pl_ssm_get_parameter(pl_aws *a, const char *name, char *value, size_t cap, char *err)
{
    if (!name || !name[0] || strlen(name) > 2048)
        return pt_seterr(err, PT_ERR_INVAL, "SSM parameter name invalid");
    cJSON *req = cJSON_CreateObject();
    if (!req || !cJSON_AddStringToObject(req, "Name", name)) {
        cJSON_Delete(req);
        return NOMEM(err);
    }
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!body) return NOMEM(err);
    pl_call c = {.svc = PL_SSM, .method = "POST", .body = body, .body_len = strlen(body),
                 .max_resp = 1 << 20};
    c.headers[c.n_headers++] = (pl_header){"Content-Type", "application/x-amz-json-1.1"};
    c.headers[c.n_headers++] = (pl_header){"X-Amz-Target", "AmazonSSM.GetParameter"};
    pl_resp r = {0};
    int rc = pl_aws_call(a, &c, &r, NULL, err);
    free(body);
    if (!rc) {
        cJSON *j = pt_json_parse(r.body.data ? r.body.data : "", r.body.len, NULL);
        const cJSON *p = j ? cJSON_GetObjectItemCaseSensitive(j, "Parameter") : NULL;
        const cJSON *v = p ? cJSON_GetObjectItemCaseSensitive(p, "Value") : NULL;
        const cJSON *nm = p ? cJSON_GetObjectItemCaseSensitive(p, "Name") : NULL;
        if (!cJSON_IsString(v) || !v->valuestring[0])
            rc = pt_seterr(err, PT_ERR_PROTO, "SSM GetParameter %s: reply lacks Parameter.Value",
                           name);
        else if (cJSON_IsString(nm) && strcmp(nm->valuestring, name))
            rc = pt_seterr(err, PT_ERR_PROTO, "SSM GetParameter: asked %s, got %s", name,
                           nm->valuestring);
        else if (strlen(v->valuestring) >= cap)
            rc = pt_seterr(err, PT_ERR_RANGE, "SSM parameter %s value too long", name);
        else
            snprintf(value, cap, "%s", v->valuestring);
        cJSON_Delete(j);
    }
    pl_resp_free(&r);
    return rc;
}
