/* main.c - the petal command: git-style subcommands. */
#include "petal.h"
#include "cmd.h"
#include "blas_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", pt_cmd_run, "run a whole federated evaluation locally (server + N clients)"},
    {"server", pt_cmd_server, "run a Flower-compatible federated-learning server"},
    {"client", pt_cmd_client, "run a Flower-compatible federated-learning client"},
    {"report", pt_cmd_report, "build report.html from a results directory"},
    {"launch", pt_cmd_launch, "run a whole experiment on AWS EC2 + S3"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: petal <command> [options]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'petal <command> --help' describes a command's options.\n"
               "'petal --version' prints the version.\n");
}

int main(int argc, char **argv)
{
    pt_blas_fix_core(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc > 2 && strcmp(argv[1], "help") == 0) {
            char *sub[] = {argv[2], "--help", NULL};
            for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (!strcmp(commands[i].name, argv[2])) return commands[i].fn(2, sub);
        }
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("petal %s\n", PT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].name, argv[1])) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "petal: '%s' is not a petal command. See 'petal --help'.\n", argv[1]);
    return 2;
}
