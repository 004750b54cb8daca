/*
 * cmd.h - entry points of the petal subcommands (internal to the petal
 * binary). Each takes argv with argv[0] = the subcommand name, parses its own
 * options (getopt_long, --help prints usage to stdout and returns 0) and
 * returns the process exit status: 0 success, 1 runtime failure, 2 usage.
 */
#ifndef PETAL_CMD_H
#define PETAL_CMD_H

#define PT_VERSION "0.1.0"

int pt_cmd_run(int argc, char **argv);    /* core/cmd_run.c */
int pt_cmd_server(int argc, char **argv); /* core/cmd_server.c */
int pt_cmd_client(int argc, char **argv); /* core/cmd_client.c */
int pt_cmd_report(int argc, char **argv); /* core/cmd_report.c */
int pt_cmd_launch(int argc, char **argv); /* launcher/cmd_launch.c */

#endif
