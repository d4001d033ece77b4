/*
 * main.c: fedgate's command line.
 *
 *   fedgate [-c FILE]                 run in the foreground
 *   fedgate -c FILE --check-config    validate and exit
 *   fedgate -c FILE --print-config    effective configuration
 *   fedgate -c FILE --print-server-config prosody|ejabberd
 *   fedgate --version | --help
 */
#include "config.h"

#include "conf.h"
#include "daemon.h"
#include "err.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG SYSCONFDIR "/fedgate/fedgate.conf"

enum main_action {
    ACTION_RUN,
    ACTION_CHECK,
    ACTION_PRINT,
    ACTION_PRINT_SERVER,
    ACTION_PRINT_DOC,
};

static void main_usage(FILE *out)
{
    fprintf(out,
            "Usage: fedgate [OPTION]...\n"
            "XMPP federation gateway: an XEP-0114 component that carries a "
            "home server's\n"
            "inter-domain traffic to trusted peers.\n"
            "\n"
            "  -c, --config FILE              configuration file (default "
            "%s)\n"
            "  -t, --check-config             validate the configuration "
            "and exit\n"
            "  -T, --print-config             print the effective "
            "configuration and exit\n"
            "  -S, --print-server-config KIND print the home-server "
            "snippet (prosody or\n"
            "                                 ejabberd) and exit\n"
            "      --print-config-doc         print every configuration key "
            "and exit\n"
            "  -V, --version                  print the version and exit\n"
            "  -h, --help                     print this help and exit\n"
            "\n"
            "Runs in the foreground and logs to stderr (or syslog, see "
            "fedgate.conf(5)).\n"
            "SIGHUP reloads the configuration; SIGTERM closes every stream "
            "and exits.\n",
            DEFAULT_CONFIG);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 't'},
        {"print-config", no_argument, NULL, 'T'},
        {"print-server-config", required_argument, NULL, 'S'},
        {"print-config-doc", no_argument, NULL, 'D'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = DEFAULT_CONFIG;
    const char *server_kind = NULL;
    enum main_action action = ACTION_RUN;
    int opt;

    while ((opt = getopt_long(argc, argv, "c:tTS:Vh", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            action = ACTION_CHECK;
            break;
        case 'T':
            action = ACTION_PRINT;
            break;
        case 'S':
            action = ACTION_PRINT_SERVER;
            server_kind = optarg;
            break;
        case 'D':
            action = ACTION_PRINT_DOC;
            break;
        case 'V':
            printf("fedgate %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            main_usage(stdout);
            return 0;
        default:
            main_usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "fedgate: unexpected argument '%s'\n", argv[optind]);
        main_usage(stderr);
        return 2;
    }
    if (action == ACTION_PRINT_DOC) {
        conf_print_doc(stdout);
        return 0;
    }

    struct conf *cfg = NULL;
    if (conf_load(path, &cfg, stderr) != 0) {
        fprintf(stderr, "fedgate: %s: configuration not valid\n", path);
        return 1;
    }
    int rc = 0;
    switch (action) {
    case ACTION_CHECK:
        printf("%s: configuration OK\n", path);
        break;
    case ACTION_PRINT:
        conf_print(cfg, stdout);
        break;
    case ACTION_PRINT_SERVER:
        if (conf_print_server(cfg, server_kind, stdout) != 0) {
            fprintf(stderr,
                    "fedgate: unknown server kind '%s' (prosody or "
                    "ejabberd)\n",
                    server_kind);
            rc = 2;
        }
        break;
    case ACTION_RUN:
        rc = daemon_run(cfg) == 0 ? 0 : 1;
        return rc; /* daemon_run consumed cfg */
    case ACTION_PRINT_DOC:
        break;
    }
    conf_free(cfg);
    return rc;
}
