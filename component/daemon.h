/*
 * daemon.h: the running gateway: configuration, loop, home-server links
 * and the service JID wired together, with signal handling (SIGTERM and
 * SIGINT: clean shutdown; SIGHUP: reload the configuration).
 */
#ifndef FEDGATE_DAEMON_H
#define FEDGATE_DAEMON_H

#include "conf.h"

/*
 * Runs the gateway with cfg until a shutdown signal. Consumes cfg (freed
 * on return). Returns 0 after a clean shutdown, or a negative code when
 * start-up failed.
 */
int daemon_run(struct conf *cfg);

#endif
