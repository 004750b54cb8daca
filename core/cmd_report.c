/* cmd_report.c - 'petal report DIR': metrics.csv, summary.json and report.html. */
#include "cmd.h"
#include "petal.h"
#include "results_int.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: petal report [options] DIR\n"
            "\n"
            "Reads every events.jsonl under DIR (a results tree written by 'petal run',\n"
            "'petal server --out' or 'petal launch': DIR/<backend>/<strategy>/<n_clients>/)\n"
            "and writes DIR/metrics.csv, DIR/summary.json and DIR/report.html (one\n"
            "self-contained page with SVG charts; no scripts, nothing fetched).\n"
            "\n"
            "Options:\n"
            "  --title TEXT        page title\n"
            "  --log-loss MODE     loss axis: auto (log when it spans 2 decades), on, off\n"
            "  -h, --help          this help\n");
}

int pt_cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {{"title", required_argument, 0, 't'},
                                         {"log-loss", required_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    pt_report_opts o = {NULL, -1};
    char err[PT_ERRLEN] = "";
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 't': o.title = optarg; break;
        case 'l':
            if (!strcmp(optarg, "auto")) o.log_loss = -1;
            else if (!strcmp(optarg, "on") || !strcmp(optarg, "log")) o.log_loss = 1;
            else if (!strcmp(optarg, "off") || !strcmp(optarg, "linear")) o.log_loss = 0;
            else {
                fprintf(stderr, "petal report: --log-loss must be auto, on or off (got '%s')\n",
                        optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "petal report: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "petal report: %s\n",
                optind >= argc ? "missing results directory" : "one results directory expected");
        usage(stderr);
        return 2;
    }
    const char *dir = argv[optind];
    int rc = pt_report_build(dir, &o, err);
    if (rc != PT_OK) {
        fprintf(stderr, "petal report: %s\n", err[0] ? err : pt_strerror(rc));
        return 1;
    }
    fprintf(stderr, "petal report: wrote %s/metrics.csv, %s/summary.json, %s/report.html\n", dir,
            dir, dir);
    return 0;
}
