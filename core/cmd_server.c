/* cmd_server.c - 'petal server' (work in progress: see the issue tracker). */
#include "cmd.h"
#include "petal.h"

#include <stdio.h>

int pt_cmd_server(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "petal server: not implemented yet\n");
    return 1;
}
