/* cmd_report.c - 'petal report' (work in progress: see the issue tracker). */
#include "cmd.h"
#include "petal.h"

#include <stdio.h>

int pt_cmd_report(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "petal report: not implemented yet\n");
    return 1;
}
