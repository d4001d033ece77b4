/*
 * fuzz_s2sstream.c: the s2s stream machine fed a peer's bytes, in the
 * receiving role (the first input byte's low bit) or the initiating one,
 * with callbacks whose answers come from the input too (certificate
 * valid, policy allows, dialback verification result). TLS is simulated:
 * want_tls completes at once.
 */
#include "config.h"

#include "fuzz.h"
#include "log.h"
#include "s2sstream.h"

#include <string.h>

struct fuzz_state {
    struct s2s_stream *s;
    uint8_t flags;
};

static void f_want_tls(void *ud)
{
    struct fuzz_state *f = ud;
    s2s_stream_tls_done(f->s, (f->flags & 2) != 0);
}

static bool f_serves(void *ud, const char *local)
{
    return strcmp(local, "a.test") == 0 || strcmp(local, "fedgate.a.test") == 0;
}

static bool f_cert_valid_for(void *ud, const char *domain)
{
    struct fuzz_state *f = ud;
    return (f->flags & 4) != 0;
}

static void f_authorize(void *ud,
                        const char *remote,
                        enum policy_auth method,
                        struct policy_decision *out)
{
    struct fuzz_state *f = ud;
    out->allow = (f->flags & 8) != 0;
    out->reason = out->allow ? "fuzz allows" : "fuzz denies";
    out->condition = out->allow ? NULL : "not-authorized";
}

static void f_authenticated(void *ud,
                            const char *local,
                            const char *remote,
                            enum policy_auth method)
{
}

static void f_auth_failed(void *ud,
                          const char *local,
                          const char *remote,
                          const char *reason)
{
}

static void f_verify_needed(void *ud,
                            const char *local,
                            const char *remote,
                            const char *stream_id,
                            const char *key)
{
    struct fuzz_state *f = ud;
    s2s_stream_dialback_result(f->s, local, remote, (f->flags & 16) != 0);
}

static void f_verify_result(void *ud,
                            const char *local,
                            const char *remote,
                            const char *id,
                            bool valid)
{
}

static void f_stanza(void *ud, struct xml_node *st)
{
    xml_unref(st);
}

static void f_closed(void *ud, const struct s2s_close_info *info) {}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_LEVEL_ERROR); /* peer bytes make noise */
    static const struct s2s_stream_callbacks cb = {
        .want_tls = f_want_tls,
        .serves = f_serves,
        .cert_valid_for = f_cert_valid_for,
        .authorize = f_authorize,
        .authenticated = f_authenticated,
        .auth_failed = f_auth_failed,
        .verify_needed = f_verify_needed,
        .verify_result = f_verify_result,
        .stanza = f_stanza,
        .closed = f_closed,
    };
    if (size < 2) {
        return 0;
    }
    struct fuzz_state f = {.flags = data[0]};
    bool in = (f.flags & 1) != 0;
    struct s2s_stream_config sc = {
        .role = in ? S2S_IN : S2S_OUT,
        .local = in ? NULL : "a.test",
        .remote = in ? NULL : "b.test",
        .tls_active = (f.flags & 32) != 0,
        .tls_offer = true,
        .tls_required = (f.flags & 64) != 0,
        .cert_usable = (f.flags & 128) != 0,
        .dialback_secret = "fuzz-secret",
        .limits = {.stanza_max_preauth = 4096,
                   .stanza_max = 65536,
                   .depth_max = 32,
                   .out_max = 1u << 20},
    };
    f.s = s2s_stream_new(&sc, &cb, &f);
    if (f.s == NULL) {
        return 0;
    }
    if (!in) {
        (void)s2s_stream_start(f.s);
    }
    uint32_t seed = data[1];
    size_t off = 2;
    while (off < size && s2s_stream_state(f.s) != S2S_CLOSED) {
        size_t n = fuzz_chunk(&seed, size - off);
        (void)s2s_stream_feed(f.s, (const char *)data + off, n);
        struct buf *out = s2s_stream_output(f.s);
        buf_consume(out, buf_size(out));
        off += n;
    }
    s2s_stream_free(f.s);
    return 0;
}
