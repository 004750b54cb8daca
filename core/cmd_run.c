/* cmd_run.c - 'petal run' (work in progress: see the issue tracker). */
#include "cmd.h"
#include "petal.h"

#include <stdio.h>

int pt_cmd_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "petal run: not implemented yet\n");
    return 1;
}
