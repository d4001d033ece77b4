/*
 * fuzz_component.c: the XEP-0114 stream machine fed a home server's
 * bytes in chunks of every size.
 */
#include "config.h"

#include "fuzz.h"
#include "log.h"
#include "stream.h"

static void c_ready(void *ud) {}

static void c_stanza(void *ud, struct xml_node *st)
{
    xml_unref(st);
}

static void c_closed(void *ud, const struct stream_close_info *info) {}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_LEVEL_ERROR); /* peer bytes make noise */
    static const struct stream_callbacks cb = {c_ready, c_stanza, c_closed};
    static const struct stream_limits lim = {
        .stanza_max = 65536, .depth_max = 32, .out_max = 1u << 20};
    if (size == 0) {
        return 0;
    }
    struct stream *s =
        stream_new_component("b.test", "secret", &lim, &cb, NULL);
    if (s == NULL || stream_start(s) != 0) {
        stream_free(s);
        return 0;
    }
    uint32_t seed = data[0];
    size_t off = 1;
    while (off < size && stream_get_state(s) != STREAM_CLOSED) {
        size_t n = fuzz_chunk(&seed, size - off);
        (void)stream_feed(s, (const char *)data + off, n);
        off += n;
    }
    stream_free(s);
    return 0;
}
