/* cmd_client.c - 'petal client' (work in progress: see the issue tracker). */
#include "cmd.h"
#include "petal.h"

#include <stdio.h>

int pt_cmd_client(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "petal client: not implemented yet\n");
    return 1;
}
