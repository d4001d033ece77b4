/*
 * fuzz_conf.c: the configuration parser fed arbitrary file contents.
 * Errors go to /dev/null; a crash or leak is the finding.
 */
#include "config.h"

#include "conf.h"
#include "fuzz.h"
#include "log.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_LEVEL_ERROR); /* peer bytes make noise */
    int fd = memfd_create("fuzz-conf", 0);
    if (fd < 0) {
        return 0;
    }
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    FILE *devnull = fopen("/dev/null", "w");
    struct conf *cfg = NULL;
    if (conf_load(path, &cfg, devnull) == 0) {
        FILE *out = devnull;
        conf_print(cfg, out);
        (void)conf_print_server(cfg, "prosody", out);
        (void)conf_print_server(cfg, "ejabberd", out);
        conf_free(cfg);
    }
    if (devnull != NULL) {
        fclose(devnull);
    }
    close(fd);
    return 0;
}
