/* cmd_launch.c - 'petal launch' (work in progress: see the issue tracker). */
#include "cmd.h"
#include "petal.h"

#include <stdio.h>

int pt_cmd_launch(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "petal launch: not implemented yet\n");
    return 1;
}
