/* prices.c - instance types the launcher knows: vCPUs and on-demand price,
 * for the Learner Lab limits and the plan's cost estimate. */
#include "plaunch.h"

#include <stdlib.h>
#include <string.h>

/* us-east-1, Linux, on-demand, USD per hour (AWS EC2 pricing page, 2025).
 * Prices change: the plan says where they come from; unknown types get no
 * estimate rather than a guess. */
static const struct {
    const char *type;
    int vcpus;
    double usd_h;
} types[] = {
    {"t2.nano", 1, 0.0058},    {"t2.micro", 1, 0.0116},   {"t2.small", 1, 0.023},
    {"t2.medium", 2, 0.0464},  {"t2.large", 2, 0.0928},   {"t3.nano", 2, 0.0052},
    {"t3.micro", 2, 0.0104},   {"t3.small", 2, 0.0208},   {"t3.medium", 2, 0.0416},
    {"t3.large", 2, 0.0832},   {"t3.xlarge", 4, 0.1664},  {"t3.2xlarge", 8, 0.3328},
    {"t3a.nano", 2, 0.0047},   {"t3a.micro", 2, 0.0094},  {"t3a.small", 2, 0.0188},
    {"t3a.medium", 2, 0.0376}, {"t3a.large", 2, 0.0752},  {"m5.large", 2, 0.096},
    {"m5.xlarge", 4, 0.192},   {"m5.2xlarge", 8, 0.384},  {"m6i.large", 2, 0.096},
    {"m6i.xlarge", 4, 0.192},  {"m7i.large", 2, 0.1008}, {"c5.large", 2, 0.085},
    {"c5.xlarge", 4, 0.17},    {"c5.2xlarge", 8, 0.34},   {"c6i.large", 2, 0.085},
    {"c6i.xlarge", 4, 0.17},   {"c7i.large", 2, 0.08925}, {"r5.large", 2, 0.126},
    {"r5.xlarge", 4, 0.252},   {"r5.2xlarge", 8, 0.504},  {"r6i.large", 2, 0.126},
    {"r6i.xlarge", 4, 0.252},
};

static int find(const char *type)
{
    for (size_t i = 0; type && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(types[i].type, type)) return (int)i;
    return -1;
}

int pl_instance_vcpus(const char *type)
{
    int i = find(type);
    if (i >= 0) return types[i].vcpus;
    const char *dot = type ? strchr(type, '.') : NULL;
    const char *sz = dot ? dot + 1 : "";
    if (!strcmp(sz, "xlarge")) return 4;
    int k = atoi(sz);
    if (k > 0 && strstr(sz, "xlarge")) return 4 * k;
    return 2; /* nano .. large */
}

double pl_instance_price(const char *type)
{
    int i = find(type);
    return i >= 0 ? types[i].usd_h : 0;
}

int pl_is_learner_lab(const char *arn)
{
    /* arn:aws:sts::123456789012:assumed-role/voclabs/user1234567=Name */
    return arn && !strncmp(arn, "arn:", 4) && strstr(arn, ":assumed-role/voclabs/") != NULL;
}
