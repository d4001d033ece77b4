/*
 * check_s2sstream.c: the s2s stream state machine.
 *
 * Three kinds of test: pairs of machines (S2S_OUT talking to S2S_IN in
 * memory, TLS simulated by calling tls_done on both when both asked for
 * it), scripted peer bytes against the receiving role (anti-spoofing,
 * header checks, limits, restricted XML, STARTTLS injection, dialback,
 * SASL EXTERNAL), and scripted Prosody / ejabberd wire sequences against
 * the initiating role, fed at every byte split point.
 */
#include "config.h"

#include "s2sstream.h"

#include "buf.h"
#include "dialback.h"
#include "err.h"
#include "log.h"
#include "xml.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET   "s3cr3tf0rd14lb4ck"
#define SECRET2  "another-secret"
#define NS_TLS_Q "'urn:ietf:params:xml:ns:xmpp-tls'"

/* One endpoint and everything its callbacks saw. */
struct side {
    struct s2s_stream *s;
    struct side *peer;
    /* behaviour */
    const char *served[3];
    bool cert_valid;
    bool deny_sasl;
    bool deny_dialback;
    /* records */
    int want_tls;
    int authenticated;
    char auth_local[256];
    char auth_remote[256];
    enum policy_auth auth_method;
    int auth_failed;
    char fail_reason[256];
    int verify_needed;
    char vn_local[256];
    char vn_remote[256];
    char vn_id[256];
    char vn_key[256];
    int verify_result;
    bool vr_valid;
    char vr_id[256];
    int stanzas;
    struct xml_node *last;
    int closed;
    int close_err;
    char close_condition[64];
    char close_text[256];
    bool close_by_peer;
};

static void cb_want_tls(void *ud)
{
    struct side *x = ud;
    x->want_tls++;
}

static bool cb_serves(void *ud, const char *local)
{
    struct side *x = ud;
    for (size_t i = 0; i < 3; i++) {
        if (x->served[i] != NULL && strcmp(x->served[i], local) == 0) {
            return true;
        }
    }
    return false;
}

static bool cb_cert_valid_for(void *ud, const char *domain)
{
    struct side *x = ud;
    return x->cert_valid;
}

static void cb_authorize(void *ud,
                         const char *remote,
                         enum policy_auth method,
                         struct policy_decision *out)
{
    struct side *x = ud;
    out->allow = true;
    if ((method == POLICY_AUTH_SASL_EXTERNAL && x->deny_sasl) ||
        (method == POLICY_AUTH_DIALBACK && x->deny_dialback)) {
        out->allow = false;
        out->reason = "denied by test policy";
        out->condition = "policy-violation";
    }
}

static void cb_authenticated(void *ud,
                             const char *local,
                             const char *remote,
                             enum policy_auth method)
{
    struct side *x = ud;
    x->authenticated++;
    snprintf(x->auth_local, sizeof(x->auth_local), "%s", local);
    snprintf(x->auth_remote, sizeof(x->auth_remote), "%s", remote);
    x->auth_method = method;
}

static void cb_auth_failed(void *ud,
                           const char *local,
                           const char *remote,
                           const char *reason)
{
    struct side *x = ud;
    x->auth_failed++;
    snprintf(x->fail_reason, sizeof(x->fail_reason), "%s", reason);
}

static void cb_verify_needed(void *ud,
                             const char *local,
                             const char *remote,
                             const char *stream_id,
                             const char *key)
{
    struct side *x = ud;
    x->verify_needed++;
    snprintf(x->vn_local, sizeof(x->vn_local), "%s", local);
    snprintf(x->vn_remote, sizeof(x->vn_remote), "%s", remote);
    snprintf(x->vn_id, sizeof(x->vn_id), "%s", stream_id);
    snprintf(x->vn_key, sizeof(x->vn_key), "%s", key);
}

static void cb_verify_result(void *ud,
                             const char *local,
                             const char *remote,
                             const char *id,
                             bool valid)
{
    struct side *x = ud;
    x->verify_result++;
    x->vr_valid = valid;
    snprintf(x->vr_id, sizeof(x->vr_id), "%s", id);
}

static void cb_stanza(void *ud, struct xml_node *st)
{
    struct side *x = ud;
    x->stanzas++;
    xml_unref(x->last);
    x->last = st;
}

static void cb_closed(void *ud, const struct s2s_close_info *info)
{
    struct side *x = ud;
    x->closed++;
    x->close_err = info->err;
    snprintf(x->close_condition, sizeof(x->close_condition), "%s",
             info->condition != NULL ? info->condition : "");
    snprintf(x->close_text, sizeof(x->close_text), "%s",
             info->text != NULL ? info->text : "");
    x->close_by_peer = info->by_peer;
}

static const struct s2s_stream_callbacks test_cb = {
    .want_tls = cb_want_tls,
    .serves = cb_serves,
    .cert_valid_for = cb_cert_valid_for,
    .authorize = cb_authorize,
    .authenticated = cb_authenticated,
    .auth_failed = cb_auth_failed,
    .verify_needed = cb_verify_needed,
    .verify_result = cb_verify_result,
    .stanza = cb_stanza,
    .closed = cb_closed,
};

static const struct s2s_limits test_limits = {
    .stanza_max_preauth = 1024,
    .stanza_max = 8192,
    .depth_max = 16,
    .out_max = 64 * 1024,
};

static struct s2s_stream_config out_config(const char *local,
                                           const char *remote)
{
    struct s2s_stream_config c = {
        .role = S2S_OUT,
        .local = local,
        .remote = remote,
        .tls_active = false,
        .tls_offer = false,
        .tls_required = true,
        .cert_usable = true,
        .dialback_secret = SECRET,
        .limits = test_limits,
    };
    return c;
}

static struct s2s_stream_config in_config(void)
{
    struct s2s_stream_config c = {
        .role = S2S_IN,
        .tls_active = false,
        .tls_offer = true,
        .tls_required = true,
        .cert_usable = false,
        .dialback_secret = SECRET,
        .limits = test_limits,
    };
    return c;
}

static void side_open(struct side *x, const struct s2s_stream_config *c)
{
    x->s = s2s_stream_new(c, &test_cb, x);
    ck_assert_ptr_nonnull(x->s);
}

static void side_close(struct side *x)
{
    s2s_stream_free(x->s);
    xml_unref(x->last);
    memset(x, 0, sizeof(*x));
}

/* The output of x as a string (new); the buffer is emptied. */
static char *take(struct side *x)
{
    struct buf *b = s2s_stream_output(x->s);
    char *r = strndup(buf_peek(b), buf_size(b));
    ck_assert_ptr_nonnull(r);
    buf_consume(b, buf_size(b));
    return r;
}

/* Output so far, kept in a growing log for assertions. */
static bool out_has(struct side *x, const char *needle)
{
    struct buf *b = s2s_stream_output(x->s);
    return strstr(buf_peek(b), needle) != NULL;
}

static int feed(struct side *x, const char *str)
{
    return s2s_stream_feed(x->s, str, strlen(str));
}

/* Moves a's output into b; true if anything moved. */
static bool move(struct side *a, struct side *b)
{
    struct buf *o = s2s_stream_output(a->s);
    if (buf_size(o) == 0) {
        return false;
    }
    char *data = take(a);
    if (s2s_stream_state(b->s) != S2S_CLOSED) {
        (void)s2s_stream_feed(b->s, data, strlen(data));
    }
    free(data);
    return true;
}

/* Runs two machines until quiet; TLS is "done" when both asked for it. */
static void pump(struct side *a, struct side *b)
{
    for (int i = 0; i < 200; i++) {
        bool moved = move(a, b);
        moved = move(b, a) || moved;
        if (a->want_tls > 0 && b->want_tls > 0 &&
            s2s_stream_state(a->s) == S2S_TLS &&
            s2s_stream_state(b->s) == S2S_TLS) {
            s2s_stream_tls_done(a->s, true);
            s2s_stream_tls_done(b->s, true);
            moved = true;
        }
        if (!moved) {
            return;
        }
    }
    ck_abort_msg("machines did not settle");
}

static struct xml_node *
make_message(const char *from, const char *to, const char *body)
{
    struct xml_node *m = xml_element_new(XML_NS_CLIENT, "message");
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(xml_set_attr(m, "from", from), 0);
    ck_assert_int_eq(xml_set_attr(m, "to", to), 0);
    struct xml_node *b = xml_add_child(m, NULL, "body");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(xml_append_text(b, body, strlen(body)), 0);
    return m;
}

/* Sends a message over an authenticated OUT stream to its IN peer and
 * says whether it arrived with that body. */
static bool message_crosses(struct side *out,
                            struct side *in,
                            const char *from,
                            const char *to)
{
    struct xml_node *m = make_message(from, to, "hello over s2s");
    int rc = s2s_stream_send(out->s, m);
    xml_unref(m);
    if (rc != 0) {
        return false;
    }
    int before = in->stanzas;
    pump(out, in);
    if (in->stanzas != before + 1 || in->last == NULL) {
        return false;
    }
    struct xml_node *b = xml_child(in->last, XML_NS_SERVER, "body");
    char *t = b != NULL ? xml_text(b) : NULL;
    bool ok = t != NULL && strcmp(t, "hello over s2s") == 0 &&
              strcmp(in->last->ns, XML_NS_SERVER) == 0;
    free(t);
    return ok;
}

/* ---- pairs of machines ------------------------------------------------ */

/* A world: originating server a.test connects to receiving server
 * b.test. */
static void pair_setup(struct side *out, struct side *in, bool cert_valid)
{
    memset(out, 0, sizeof(*out));
    memset(in, 0, sizeof(*in));
    struct s2s_stream_config oc = out_config("a.test", "b.test");
    struct s2s_stream_config ic = in_config();
    side_open(out, &oc);
    side_open(in, &ic);
    in->served[0] = "b.test";
    in->cert_valid = cert_valid;
    out->cert_valid = true; /* b.test's certificate, seen by a.test */
    ck_assert_int_eq(s2s_stream_start(out->s), 0);
}

START_TEST(pair_starttls_sasl_external)
{
    struct side out;
    struct side in;
    pair_setup(&out, &in, true);
    pump(&out, &in);
    ck_assert_int_eq(out.want_tls, 1);
    ck_assert_int_eq(in.want_tls, 1);
    ck_assert_int_eq(out.authenticated, 1);
    ck_assert_int_eq(in.authenticated, 1);
    ck_assert_int_eq(out.auth_method, POLICY_AUTH_SASL_EXTERNAL);
    ck_assert_int_eq(in.auth_method, POLICY_AUTH_SASL_EXTERNAL);
    ck_assert_str_eq(out.auth_local, "a.test");
    ck_assert_str_eq(out.auth_remote, "b.test");
    ck_assert_str_eq(in.auth_local, "b.test");
    ck_assert_str_eq(in.auth_remote, "a.test");
    ck_assert_int_eq(s2s_stream_state(out.s), S2S_READY);
    ck_assert_int_eq(s2s_stream_state(in.s), S2S_READY);
    ck_assert(s2s_stream_pair_ok(out.s, "a.test", "b.test"));
    ck_assert(s2s_stream_pair_ok(in.s, "b.test", "a.test"));
    ck_assert(message_crosses(&out, &in, "romeo@a.test/x", "juliet@b.test"));
    ck_assert_int_eq(out.closed + in.closed, 0);
    side_close(&out);
    side_close(&in);
}
END_TEST

START_TEST(pair_direct_tls)
{
    struct side out;
    struct side in;
    memset(&out, 0, sizeof(out));
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config oc = out_config("a.test", "b.test");
    struct s2s_stream_config ic = in_config();
    oc.tls_active = true;
    ic.tls_active = true;
    side_open(&out, &oc);
    side_open(&in, &ic);
    in.served[0] = "b.test";
    in.cert_valid = true;
    ck_assert_int_eq(s2s_stream_start(out.s), 0);
    pump(&out, &in);
    ck_assert_int_eq(out.want_tls + in.want_tls, 0);
    ck_assert_int_eq(in.authenticated, 1);
    ck_assert_int_eq(out.authenticated, 1);
    ck_assert_int_eq(out.auth_method, POLICY_AUTH_SASL_EXTERNAL);
    ck_assert(message_crosses(&out, &in, "a.test", "b.test"));
    side_close(&out);
    side_close(&in);
}
END_TEST

/* The receiving server b.test verifies a.test's key by asking a.test's
 * authoritative server over a second pair of machines (b.test -> a.test),
 * whose receiving side holds auth_secret. Returns the verify result. */
static bool run_verify(struct side *in, const char *auth_secret)
{
    struct side out2;
    struct side in2;
    memset(&out2, 0, sizeof(out2));
    memset(&in2, 0, sizeof(in2));
    struct s2s_stream_config oc = out_config("b.test", "a.test");
    oc.cert_usable = false;
    oc.dialback_secret = SECRET2;
    struct s2s_stream_config ic = in_config();
    ic.dialback_secret = auth_secret;
    side_open(&out2, &oc);
    side_open(&in2, &ic);
    in2.served[0] = "a.test";
    ck_assert_int_eq(s2s_stream_start(out2.s), 0);
    ck_assert_int_eq(s2s_stream_send_verify(out2.s, in->vn_local, in->vn_remote,
                                            in->vn_id, in->vn_key),
                     0);
    pump(&out2, &in2);
    ck_assert_int_eq(out2.verify_result, 1);
    ck_assert_str_eq(out2.vr_id, in->vn_id);
    /* out2's own dialback request reached in2 (multiplexing works). */
    ck_assert_int_eq(in2.verify_needed, 1);
    bool valid = out2.vr_valid;
    side_close(&out2);
    side_close(&in2);
    return valid;
}

START_TEST(pair_starttls_dialback_valid)
{
    struct side out;
    struct side in;
    pair_setup(&out, &in, false);
    pump(&out, &in);
    ck_assert_int_eq(in.verify_needed, 1);
    ck_assert_str_eq(in.vn_local, "b.test");
    ck_assert_str_eq(in.vn_remote, "a.test");
    ck_assert_str_eq(in.vn_id, s2s_stream_id(in.s));
    ck_assert_int_eq(in.authenticated + out.authenticated, 0);
    bool valid = run_verify(&in, SECRET);
    ck_assert(valid);
    s2s_stream_dialback_result(in.s, in.vn_local, in.vn_remote, valid);
    pump(&out, &in);
    ck_assert_int_eq(out.authenticated, 1);
    ck_assert_int_eq(in.authenticated, 1);
    ck_assert_int_eq(out.auth_method, POLICY_AUTH_DIALBACK);
    ck_assert_int_eq(in.auth_method, POLICY_AUTH_DIALBACK);
    ck_assert(message_crosses(&out, &in, "romeo@a.test", "juliet@b.test"));
    side_close(&out);
    side_close(&in);
}
END_TEST

START_TEST(pair_starttls_dialback_wrong_secret)
{
    struct side out;
    struct side in;
    pair_setup(&out, &in, false);
    pump(&out, &in);
    ck_assert_int_eq(in.verify_needed, 1);
    bool valid = run_verify(&in, "not-the-secret");
    ck_assert(!valid);
    s2s_stream_dialback_result(in.s, in.vn_local, in.vn_remote, valid);
    ck_assert_int_eq(in.auth_failed, 1);
    ck_assert(!s2s_stream_pair_ok(in.s, "b.test", "a.test"));
    struct xml_node *m = make_message("a.test", "b.test", "x");
    ck_assert_int_eq(s2s_stream_send(out.s, m), ERR_AUTH);
    xml_unref(m);
    /* A stanza pushed at the receiving side anyway is refused... */
    ck_assert_int_eq(feed(&in, "<message from='a.test' to='b.test'/>"),
                     ERR_AUTH);
    ck_assert_int_eq(in.stanzas, 0);
    ck_assert_str_eq(in.close_condition, "not-authorized");
    /* ...and the initiator learns its key was refused. */
    pump(&out, &in);
    ck_assert_int_eq(out.auth_failed, 1);
    ck_assert_str_eq(out.fail_reason, "dialback key rejected");
    ck_assert_int_eq(out.authenticated + in.authenticated, 0);
    ck_assert_int_eq(out.closed, 1);
    side_close(&out);
    side_close(&in);
}
END_TEST

START_TEST(pair_tls_required_not_offered)
{
    struct side out;
    struct side in;
    memset(&out, 0, sizeof(out));
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config oc = out_config("a.test", "b.test");
    struct s2s_stream_config ic = in_config();
    ic.tls_offer = false;
    ic.tls_required = false;
    side_open(&out, &oc);
    side_open(&in, &ic);
    in.served[0] = "b.test";
    ck_assert_int_eq(s2s_stream_start(out.s), 0);
    pump(&out, &in);
    ck_assert_int_eq(out.closed, 1);
    ck_assert_int_eq(out.close_err, ERR_AUTH);
    ck_assert_str_eq(out.close_condition, "policy-violation");
    ck_assert_ptr_nonnull(strstr(out.close_text, "STARTTLS"));
    ck_assert_int_eq(out.auth_failed, 1);
    ck_assert_int_eq(in.verify_needed, 0);
    ck_assert_int_eq(in.closed, 1);
    ck_assert_str_eq(in.close_condition, "policy-violation");
    ck_assert(in.close_by_peer);
    side_close(&out);
    side_close(&in);
}
END_TEST

START_TEST(pair_policy_denies_dialback)
{
    struct side out;
    struct side in;
    pair_setup(&out, &in, false);
    in.deny_dialback = true;
    pump(&out, &in);
    ck_assert_int_eq(in.verify_needed, 0);
    ck_assert_int_eq(in.auth_failed, 1);
    ck_assert_int_eq(out.auth_failed, 1);
    ck_assert_str_eq(out.fail_reason, "dialback error: policy-violation");
    ck_assert_int_eq(out.authenticated + in.authenticated, 0);
    side_close(&out);
    side_close(&in);
}
END_TEST

START_TEST(pair_sasl_failure_falls_back_to_dialback)
{
    struct side out;
    struct side in;
    pair_setup(&out, &in, true);
    in.deny_sasl = true; /* EXTERNAL offered, then refused by policy */
    pump(&out, &in);
    ck_assert_int_eq(in.authenticated, 0);
    ck_assert_int_eq(in.verify_needed, 1);
    s2s_stream_dialback_result(in.s, in.vn_local, in.vn_remote,
                               run_verify(&in, SECRET));
    pump(&out, &in);
    ck_assert_int_eq(out.authenticated, 1);
    ck_assert_int_eq(out.auth_method, POLICY_AUTH_DIALBACK);
    ck_assert_int_eq(in.auth_method, POLICY_AUTH_DIALBACK);
    ck_assert(message_crosses(&out, &in, "a.test", "b.test"));
    side_close(&out);
    side_close(&in);
}
END_TEST

START_TEST(pair_add_pair_multiplexed)
{
    struct side out;
    struct side in;
    pair_setup(&out, &in, false);
    in.served[1] = "muc.b.test";
    pump(&out, &in);
    s2s_stream_dialback_result(in.s, "b.test", "a.test", true);
    pump(&out, &in);
    ck_assert_int_eq(out.authenticated, 1);
    ck_assert_int_eq(s2s_stream_add_pair(out.s, "a.test", "muc.b.test"), 0);
    pump(&out, &in);
    ck_assert_int_eq(in.verify_needed, 2);
    ck_assert_str_eq(in.vn_local, "muc.b.test");
    /* Not yet confirmed: that pair carries nothing. */
    struct xml_node *m = make_message("a.test", "room@muc.b.test", "x");
    ck_assert_int_eq(s2s_stream_send(out.s, m), ERR_AUTH);
    s2s_stream_dialback_result(in.s, "muc.b.test", "a.test", true);
    pump(&out, &in);
    ck_assert_int_eq(out.authenticated, 2);
    ck_assert_int_eq(s2s_stream_send(out.s, m), 0);
    xml_unref(m);
    pump(&out, &in);
    ck_assert_int_eq(in.stanzas, 1);
    side_close(&out);
    side_close(&in);
}
END_TEST

/* ---- scripted bytes against S2S_IN ------------------------------------ */

#define HDR_OPEN                                                \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server'" \
    " xmlns:stream='http://etherx.jabber.org/streams'"
#define HDR_DB " xmlns:db='jabber:server:dialback'"
#define HDR    HDR_OPEN HDR_DB " from='a.test' to='b.test' version='1.0'>"

/* An IN machine on direct TLS serving b.test, header already fed. */
static void in_open(struct side *in, bool cert_valid)
{
    memset(in, 0, sizeof(*in));
    struct s2s_stream_config ic = in_config();
    ic.tls_active = true;
    side_open(in, &ic);
    in->served[0] = "b.test";
    in->cert_valid = cert_valid;
    ck_assert_int_eq(feed(in, HDR), 0);
}

/* ... and a.test -> b.test authenticated by dialback. */
static void in_open_auth(struct side *in)
{
    in_open(in, false);
    ck_assert_int_eq(
        feed(in, "<db:result from='a.test' to='b.test'>k</db:result>"), 0);
    ck_assert_int_eq(in->verify_needed, 1);
    s2s_stream_dialback_result(in->s, "b.test", "a.test", true);
    ck_assert_int_eq(in->authenticated, 1);
    ck_assert(out_has(in, "<db:result from='b.test' to='a.test' "
                          "type='valid'/>"));
}

static void expect_stream_error(struct side *in, int rc, const char *cond)
{
    ck_assert_int_ne(rc, 0);
    ck_assert_int_eq(in->closed, 1);
    ck_assert_str_eq(in->close_condition, cond);
    ck_assert(!in->close_by_peer);
    char want[128];
    snprintf(want, sizeof(want), "<stream:error><%s xmlns=", cond);
    ck_assert_msg(out_has(in, want), "no %s in output", cond);
    ck_assert(out_has(in, "</stream:stream>"));
    ck_assert_int_eq(s2s_stream_state(in->s), S2S_CLOSED);
}

START_TEST(in_header_answer)
{
    struct side in;
    in_open(&in, false);
    const char *id = s2s_stream_id(in.s);
    ck_assert_ptr_nonnull(id);
    ck_assert_uint_ge(strlen(id), 16);
    ck_assert_uint_eq(strspn(id, "0123456789abcdef"), strlen(id));
    char want[128];
    snprintf(want, sizeof(want), " from='b.test' to='a.test' id='%s'", id);
    ck_assert(out_has(&in, want));
    ck_assert(out_has(&in, "xmlns:db='jabber:server:dialback'"));
    ck_assert_str_eq(s2s_stream_header_from(in.s), "a.test");
    ck_assert_str_eq(s2s_stream_header_to(in.s), "b.test");
    /* A second machine gets a different id. */
    struct side in2;
    in_open(&in2, false);
    ck_assert_str_ne(s2s_stream_id(in2.s), id);
    side_close(&in2);
    side_close(&in);
}
END_TEST

START_TEST(in_features_before_and_after_tls)
{
    struct side in;
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config ic = in_config();
    side_open(&in, &ic);
    in.served[0] = "b.test";
    in.cert_valid = true;
    ck_assert_int_eq(feed(&in, HDR), 0);
    ck_assert(out_has(&in, "<stream:features><starttls xmlns=" NS_TLS_Q
                           "><required/></starttls></stream:features>"));
    ck_assert(!out_has(&in, "mechanisms"));
    ck_assert(!out_has(&in, "dialback xmlns"));
    free(take(&in));
    ck_assert_int_eq(
        feed(&in, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"), 0);
    ck_assert(out_has(&in, "<proceed xmlns=" NS_TLS_Q "/>"));
    ck_assert_int_eq(in.want_tls, 1);
    ck_assert_int_eq(s2s_stream_state(in.s), S2S_TLS);
    const char *old_id = strdup(s2s_stream_id(in.s));
    free(take(&in));
    s2s_stream_tls_done(in.s, true);
    ck_assert_int_eq(feed(&in, HDR), 0);
    ck_assert_str_ne(s2s_stream_id(in.s), old_id);
    free((void *)old_id);
    ck_assert(out_has(&in, "<stream:features><mechanisms xmlns="
                           "'urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>"
                           "EXTERNAL</mechanism></mechanisms><dialback xmlns="
                           "'urn:xmpp:features:dialback'><errors/></dialback>"
                           "</stream:features>"));
    ck_assert(!out_has(&in, "starttls"));
    side_close(&in);
}
END_TEST

START_TEST(in_no_mechanisms_without_cert)
{
    struct side in;
    in_open(&in, false);
    ck_assert(!out_has(&in, "mechanisms"));
    ck_assert(out_has(&in, "<dialback xmlns='urn:xmpp:features:dialback'>"));
    side_close(&in);
}
END_TEST

START_TEST(in_sasl_external_restart)
{
    struct side in;
    in_open(&in, true);
    free(take(&in));
    ck_assert_int_eq(feed(&in, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"
                               " mechanism='EXTERNAL'>YS50ZXN0</auth>"),
                     0);
    ck_assert(
        out_has(&in, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"));
    ck_assert_int_eq(in.authenticated, 1);
    ck_assert_int_eq(in.auth_method, POLICY_AUTH_SASL_EXTERNAL);
    free(take(&in));
    ck_assert_int_eq(feed(&in, HDR), 0);
    ck_assert(out_has(&in, "<stream:features/>"));
    ck_assert_int_eq(s2s_stream_state(in.s), S2S_READY);
    ck_assert_int_eq(feed(&in, "<message from='a.test' to='b.test'/>"), 0);
    ck_assert_int_eq(in.stanzas, 1);
    side_close(&in);
}
END_TEST

START_TEST(in_sasl_authzid_equals_sign)
{
    struct side in;
    in_open(&in, true);
    ck_assert_int_eq(feed(&in, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"
                               " mechanism='EXTERNAL'>=</auth>"),
                     0);
    ck_assert(out_has(&in, "<success "));
    ck_assert_int_eq(in.authenticated, 1);
    side_close(&in);
}
END_TEST

START_TEST(in_sasl_authzid_mismatch)
{
    struct side in;
    in_open(&in, true);
    /* base64("c.test") */
    ck_assert_int_eq(feed(&in, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"
                               " mechanism='EXTERNAL'>Yy50ZXN0</auth>"),
                     0);
    ck_assert(out_has(&in, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                           "<invalid-authzid/></failure>"));
    ck_assert(!out_has(&in, "<success"));
    ck_assert_int_eq(in.authenticated, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_sasl_unknown_mechanism)
{
    struct side in;
    in_open(&in, true);
    ck_assert_int_eq(feed(&in, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"
                               " mechanism='PLAIN'>AGEAYg==</auth>"),
                     0);
    ck_assert(out_has(&in, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                           "<invalid-mechanism/></failure>"));
    ck_assert_int_eq(in.authenticated, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_sasl_cert_not_valid)
{
    struct side in;
    in_open(&in, false);
    ck_assert_int_eq(feed(&in, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"
                               " mechanism='EXTERNAL'>=</auth>"),
                     0);
    ck_assert(out_has(&in, "<not-authorized/></failure>"));
    ck_assert_int_eq(in.authenticated, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_stanza_before_auth)
{
    struct side in;
    in_open(&in, false);
    int rc = feed(&in, "<message from='a.test' to='b.test'/>");
    expect_stream_error(&in, rc, "not-authorized");
    ck_assert_int_eq(in.stanzas, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_invalid_from)
{
    struct side in;
    in_open_auth(&in);
    int rc = feed(&in, "<message from='mallory@evil.test' to='x@b.test'/>");
    expect_stream_error(&in, rc, "invalid-from");
    ck_assert_int_eq(in.stanzas, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_host_unknown_to)
{
    struct side in;
    in_open_auth(&in);
    int rc = feed(&in, "<message from='a.test' to='x@other.test'/>");
    expect_stream_error(&in, rc, "host-unknown");
    ck_assert_int_eq(in.stanzas, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_improper_addressing)
{
    struct side in;
    in_open_auth(&in);
    int rc = feed(&in, "<presence to='x@b.test'/>");
    expect_stream_error(&in, rc, "improper-addressing");
    ck_assert_int_eq(in.stanzas, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_stanza_accepted_case_insensitive)
{
    struct side in;
    in_open_auth(&in);
    ck_assert_int_eq(feed(&in, "<iq type='get' id='1' from='a.test'"
                               " to='B.Test'><ping xmlns='urn:xmpp:ping'/>"
                               "</iq>"),
                     0);
    ck_assert_int_eq(in.stanzas, 1);
    ck_assert_str_eq(in.last->name, "iq");
    side_close(&in);
}
END_TEST

START_TEST(in_wrong_default_namespace)
{
    struct side in;
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config ic = in_config();
    side_open(&in, &ic);
    in.served[0] = "b.test";
    int rc = feed(&in, "<?xml version='1.0'?><stream:stream"
                       " xmlns='jabber:client' xmlns:stream="
                       "'http://etherx.jabber.org/streams' to='b.test'"
                       " version='1.0'>");
    expect_stream_error(&in, rc, "invalid-namespace");
    /* The error follows our own header (RFC 6120 4.9.1.1). */
    ck_assert(out_has(&in, "<stream:stream xmlns='jabber:server'"));
    side_close(&in);
}
END_TEST

static void header_refused(const char *header, const char *cond)
{
    struct side in;
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config ic = in_config();
    side_open(&in, &ic);
    in.served[0] = "b.test";
    expect_stream_error(&in, feed(&in, header), cond);
    ck_assert(!out_has(&in, "<stream:features"));
    side_close(&in);
}

START_TEST(in_version_0_9)
{
    header_refused(HDR_OPEN HDR_DB " from='a.test' to='b.test'"
                                   " version='0.9'>",
                   "unsupported-version");
}
END_TEST

START_TEST(in_version_missing)
{
    header_refused(HDR_OPEN HDR_DB " from='a.test' to='b.test'>",
                   "unsupported-version");
}
END_TEST

START_TEST(in_to_not_served)
{
    header_refused(HDR_OPEN HDR_DB " from='a.test' to='c.test'"
                                   " version='1.0'>",
                   "host-unknown");
}
END_TEST

START_TEST(in_oversized_before_auth)
{
    struct side in;
    in_open(&in, false);
    char big[2048];
    int n = snprintf(big, sizeof(big),
                     "<message from='a.test' to='b.test'>"
                     "<body>");
    memset(big + n, 'x', 1200);
    snprintf(big + n + 1200, sizeof(big) - (size_t)n - 1200,
             "</body></message>");
    expect_stream_error(&in, feed(&in, big), "policy-violation");
    ck_assert_int_eq(in.close_err, ERR_XML_TOO_BIG);
    side_close(&in);
}
END_TEST

START_TEST(in_oversized_after_auth)
{
    struct side in;
    in_open_auth(&in);
    char big[10000];
    int n = snprintf(big, sizeof(big),
                     "<message from='a.test' to='b.test'>"
                     "<body>");
    /* 1200 bytes: above the pre-auth limit, below the post-auth one. */
    memset(big + n, 'x', 1200);
    snprintf(big + n + 1200, sizeof(big) - (size_t)n - 1200,
             "</body></message>");
    ck_assert_int_eq(feed(&in, big), 0);
    ck_assert_int_eq(in.stanzas, 1);
    memset(big + n, 'y', 9000);
    snprintf(big + n + 9000, sizeof(big) - (size_t)n - 9000,
             "</body></message>");
    expect_stream_error(&in, feed(&in, big), "policy-violation");
    ck_assert_int_eq(in.stanzas, 1);
    side_close(&in);
}
END_TEST

START_TEST(in_doctype_restricted)
{
    struct side in;
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config ic = in_config();
    side_open(&in, &ic);
    in.served[0] = "b.test";
    int rc = feed(&in, "<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY a "
                       "'aaaa'>]>" HDR);
    expect_stream_error(&in, rc, "restricted-xml");
    side_close(&in);
}
END_TEST

START_TEST(in_starttls_injection_discarded)
{
    struct side in;
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config ic = in_config();
    side_open(&in, &ic);
    in.served[0] = "b.test";
    ck_assert_int_eq(feed(&in, HDR), 0);
    /* Plaintext smuggled behind <starttls/> in the same read. */
    ck_assert_int_eq(feed(&in,
                          "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                          "<db:result from='a.test' to='b.test'>k</db:result>"
                          "<message from='a.test' to='b.test'/>"),
                     0);
    ck_assert_int_eq(in.want_tls, 1);
    ck_assert_int_eq(s2s_stream_state(in.s), S2S_TLS);
    s2s_stream_tls_done(in.s, true);
    ck_assert_int_eq(feed(&in, HDR), 0);
    ck_assert_int_eq(in.verify_needed, 0);
    ck_assert_int_eq(in.stanzas, 0);
    ck_assert_int_eq(in.closed, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_restart_cannot_change_to)
{
    struct side in;
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config ic = in_config();
    side_open(&in, &ic);
    in.served[0] = "b.test";
    in.served[1] = "c.test";
    ck_assert_int_eq(feed(&in, HDR "<starttls xmlns=" NS_TLS_Q "/>"), 0);
    s2s_stream_tls_done(in.s, true);
    int rc = feed(&in, HDR_OPEN HDR_DB " from='a.test' to='c.test'"
                                       " version='1.0'>");
    expect_stream_error(&in, rc, "improper-addressing");
    ck_assert_str_eq(s2s_stream_header_to(in.s), "b.test");
    side_close(&in);
}
END_TEST

START_TEST(in_starttls_not_offered)
{
    struct side in;
    in_open(&in, false); /* already on TLS */
    free(take(&in));
    int rc = feed(&in, "<starttls xmlns=" NS_TLS_Q "/>");
    ck_assert_int_ne(rc, 0);
    ck_assert_int_eq(in.want_tls, 0);
    ck_assert(out_has(&in, "<failure xmlns=" NS_TLS_Q "/></stream:stream>"));
    ck_assert_int_eq(in.closed, 1);
    side_close(&in);
}
END_TEST

START_TEST(in_tls_failed)
{
    struct side in;
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config ic = in_config();
    side_open(&in, &ic);
    in.served[0] = "b.test";
    ck_assert_int_eq(feed(&in, HDR "<starttls xmlns=" NS_TLS_Q "/>"), 0);
    free(take(&in));
    s2s_stream_tls_done(in.s, false);
    ck_assert_int_eq(in.closed, 1);
    ck_assert_int_ne(in.close_err, 0);
    ck_assert_int_eq(s2s_stream_state(in.s), S2S_CLOSED);
    ck_assert_uint_eq(buf_size(s2s_stream_output(in.s)), 0);
    side_close(&in);
}
END_TEST

START_TEST(in_dialback_before_tls_refused)
{
    struct side in;
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config ic = in_config();
    side_open(&in, &ic);
    in.served[0] = "b.test";
    ck_assert_int_eq(feed(&in, HDR), 0);
    int rc = feed(&in, "<db:result from='a.test' to='b.test'>k</db:result>");
    expect_stream_error(&in, rc, "policy-violation");
    ck_assert_int_eq(in.verify_needed, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_dialback_key_not_verified)
{
    struct side in;
    in_open(&in, false);
    ck_assert_int_eq(
        feed(&in, "<db:result from='a.test' to='b.test'>bad</db:result>"), 0);
    ck_assert_int_eq(in.verify_needed, 1);
    ck_assert_str_eq(in.vn_key, "bad");
    ck_assert_str_eq(in.vn_id, s2s_stream_id(in.s));
    s2s_stream_dialback_result(in.s, "b.test", "a.test", false);
    ck_assert(out_has(&in, "<db:result from='b.test' to='a.test' "
                           "type='invalid'/>"));
    ck_assert_int_eq(in.auth_failed, 1);
    ck_assert_int_eq(in.authenticated, 0);
    /* A late second answer changes nothing. */
    s2s_stream_dialback_result(in.s, "b.test", "a.test", true);
    ck_assert_int_eq(in.authenticated, 0);
    expect_stream_error(&in, feed(&in, "<message from='a.test' to='b.test'/>"),
                        "not-authorized");
    side_close(&in);
}
END_TEST

START_TEST(in_dialback_unserved_target_error)
{
    struct side in;
    in_open(&in, false);
    ck_assert_int_eq(
        feed(&in, "<db:result from='a.test' to='c.test'>k</db:result>"), 0);
    ck_assert(out_has(&in, "<db:result from='c.test' to='a.test' "
                           "type='error'><error type='cancel'><item-not-found "
                           "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                           "</error></db:result>"));
    ck_assert_int_eq(in.verify_needed, 0);
    ck_assert_int_eq(in.closed, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_dialback_unserved_without_db_prefix)
{
    struct side in;
    memset(&in, 0, sizeof(in));
    struct s2s_stream_config ic = in_config();
    ic.tls_active = true;
    side_open(&in, &ic);
    in.served[0] = "b.test";
    ck_assert_int_eq(feed(&in, HDR_OPEN " from='a.test' to='b.test'"
                                        " version='1.0'>"),
                     0);
    int rc = feed(&in, "<result xmlns='jabber:server:dialback' from='a.test'"
                       " to='c.test'>k</result>");
    expect_stream_error(&in, rc, "host-unknown");
    side_close(&in);
}
END_TEST

/* A db:verify request from c.test for a key of b.test; new string. */
static char *db_verify_request(const char *key)
{
    struct buf b;
    buf_init(&b, 1024);
    ck_assert_int_eq(buf_printf(&b,
                                "<db:verify from='c.test' to='b.test' "
                                "id='D60000229F'>%s</db:verify>",
                                key),
                     0);
    return buf_steal(&b);
}

START_TEST(in_db_verify_valid)
{
    struct side in;
    in_open(&in, false);
    char key[DIALBACK_KEY_LEN + 1];
    /* Authoritative for b.test: the key c.test got from a b.test stream
     * with that id. */
    ck_assert_int_eq(
        dialback_key(SECRET, "c.test", "b.test", "D60000229F", key), 0);
    char *req = db_verify_request(key);
    ck_assert_int_eq(feed(&in, req), 0);
    free(req);
    ck_assert(out_has(&in, "<db:verify from='b.test' to='c.test' "
                           "id='D60000229F' type='valid'/>"));
    ck_assert_int_eq(in.authenticated + in.closed, 0);
    side_close(&in);
}
END_TEST

START_TEST(in_db_verify_invalid)
{
    struct side in;
    in_open(&in, false);
    char key[DIALBACK_KEY_LEN + 1];
    /* The right key for another stream id is wrong for this one. */
    ck_assert_int_eq(dialback_key(SECRET, "c.test", "b.test", "OTHER", key), 0);
    char *req = db_verify_request(key);
    ck_assert_int_eq(feed(&in, req), 0);
    free(req);
    ck_assert(out_has(&in, "<db:verify from='b.test' to='c.test' "
                           "id='D60000229F' type='invalid'/>"));
    ck_assert(!out_has(&in, "type='valid'"));
    side_close(&in);
}
END_TEST

/* Sends a db:verify whose key was made under key_secret to a stream
 * whose current secret is SECRET2 and previous SECRET; true if the
 * answer is valid. After set_secrets when rotate is true, else from the
 * config. */
static bool rotated_verify(const char *key_secret, bool rotate)
{
    struct side in;
    if (rotate) {
        in_open(&in, false);
        ck_assert_int_eq(s2s_stream_set_secrets(in.s, SECRET2, SECRET), 0);
    } else {
        memset(&in, 0, sizeof(in));
        struct s2s_stream_config ic = in_config();
        ic.tls_active = true;
        ic.dialback_secret = SECRET2;
        ic.previous_secret = SECRET;
        side_open(&in, &ic);
        in.served[0] = "b.test";
        ck_assert_int_eq(feed(&in, HDR), 0);
    }
    free(take(&in));
    char key[DIALBACK_KEY_LEN + 1];
    ck_assert_int_eq(
        dialback_key(key_secret, "c.test", "b.test", "D60000229F", key), 0);
    char *req = db_verify_request(key);
    ck_assert_int_eq(feed(&in, req), 0);
    free(req);
    bool valid = out_has(&in, "<db:verify from='b.test' to='c.test' "
                              "id='D60000229F' type='valid'/>");
    ck_assert(valid || out_has(&in, "<db:verify from='b.test' to='c.test' "
                                    "id='D60000229F' type='invalid'/>"));
    side_close(&in);
    return valid;
}

START_TEST(in_db_verify_after_rotation)
{
    for (int rotate = 0; rotate <= 1; rotate++) {
        /* the current secret and the one before it verify */
        ck_assert(rotated_verify(SECRET2, rotate));
        ck_assert(rotated_verify(SECRET, rotate));
        /* an unrelated one does not */
        ck_assert(!rotated_verify("unrelated-secret", rotate));
    }
}
END_TEST

START_TEST(in_db_verify_previous_dropped)
{
    /* once the grace is over, the previous secret no longer verifies */
    struct side in;
    in_open(&in, false);
    ck_assert_int_eq(s2s_stream_set_secrets(in.s, SECRET2, NULL), 0);
    free(take(&in));
    char key[DIALBACK_KEY_LEN + 1];
    ck_assert_int_eq(
        dialback_key(SECRET, "c.test", "b.test", "D60000229F", key), 0);
    char *req = db_verify_request(key);
    ck_assert_int_eq(feed(&in, req), 0);
    free(req);
    ck_assert(out_has(&in, "<db:verify from='b.test' to='c.test' "
                           "id='D60000229F' type='invalid'/>"));
    side_close(&in);
}
END_TEST

START_TEST(in_peer_close_answered)
{
    struct side in;
    in_open_auth(&in);
    free(take(&in));
    ck_assert_int_eq(feed(&in, "</stream:stream>"), 0);
    ck_assert_int_eq(in.closed, 1);
    ck_assert(in.close_by_peer);
    ck_assert_int_eq(in.close_err, 0);
    ck_assert(out_has(&in, "</stream:stream>"));
    ck_assert_int_eq(s2s_stream_state(in.s), S2S_CLOSED);
    side_close(&in);
}
END_TEST

START_TEST(in_peer_stream_error_reported)
{
    struct side in;
    in_open(&in, false);
    ck_assert_int_eq(
        feed(&in, "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:"
                  "xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-"
                  "streams'>replaced</text></stream:error>"),
        ERR_STREAM_ERROR);
    ck_assert_int_eq(in.closed, 1);
    ck_assert(in.close_by_peer);
    ck_assert_str_eq(in.close_condition, "conflict");
    ck_assert_str_eq(in.close_text, "replaced");
    side_close(&in);
}
END_TEST

START_TEST(in_send_refused)
{
    struct side in;
    in_open_auth(&in);
    struct xml_node *m = make_message("b.test", "a.test", "x");
    ck_assert_int_eq(s2s_stream_send(in.s, m), ERR_AUTH);
    xml_unref(m);
    side_close(&in);
}
END_TEST

/* ---- scripted bytes against S2S_OUT ----------------------------------- */

/* One step of a peer's wire sequence: bytes it sends, then what our
 * machine must have written in answer (a substring), and whether the
 * step ends in the TLS handshake. */
struct step {
    const char *peer;
    const char *expect;
    bool tls;
};

#define PEER_HDR(id)                                                 \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server'"      \
    " xmlns:db='jabber:server:dialback' xmlns:stream="               \
    "'http://etherx.jabber.org/streams' version='1.0' from='b.test'" \
    " to='a.test' id='" id "'>"

static const struct step prosody_steps[] = {
    {PEER_HDR("p1") "<stream:features><starttls xmlns=" NS_TLS_Q
                    "><required/></starttls></stream:features>",
     "<starttls xmlns=" NS_TLS_Q "/>", false},
    {"<proceed xmlns=" NS_TLS_Q "/>", NULL, true},
    {PEER_HDR("p2") "<stream:features><mechanisms xmlns='urn:ietf:params:"
                    "xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism>"
                    "</mechanisms><dialback xmlns='urn:xmpp:features:"
                    "dialback'/></stream:features>",
     "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
     "YS50ZXN0</auth>",
     false},
    {"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
     "<stream:stream xmlns='jabber:server'", false},
    /* Prosody still lists dialback after SASL. */
    {PEER_HDR("p3") "<stream:features><dialback xmlns='urn:xmpp:features:"
                    "dialback'/></stream:features>",
     NULL, false},
};

static const struct step ejabberd_steps[] = {
    {"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
     "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:"
     "server:dialback' id='e1' from='b.test' to='a.test' version='1.0' "
     "xml:lang='en'><stream:features><starttls xmlns=" NS_TLS_Q
     "><required/></starttls></stream:features>",
     "<starttls xmlns=" NS_TLS_Q "/>", false},
    {"<proceed xmlns=" NS_TLS_Q "/>", NULL, true},
    {"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
     "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:"
     "server:dialback' id='e2' from='b.test' to='a.test' version='1.0' "
     "xml:lang='en'><stream:features><mechanisms xmlns='urn:ietf:params:xml:"
     "ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms><dialback "
     "xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
     "</stream:features>",
     "mechanism='EXTERNAL'>YS50ZXN0</auth>", false},
    {"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
     "<stream:stream xmlns='jabber:server'", false},
    {"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
     "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:"
     "server:dialback' id='e3' from='b.test' to='a.test' version='1.0' "
     "xml:lang='en'><stream:features/>",
     NULL, false},
};

static void out_open(struct side *out)
{
    memset(out, 0, sizeof(*out));
    struct s2s_stream_config oc = out_config("a.test", "b.test");
    side_open(out, &oc);
    ck_assert_int_eq(s2s_stream_start(out->s), 0);
    ck_assert(out_has(out, "<?xml version='1.0'?><stream:stream "
                           "xmlns='jabber:server' xmlns:stream='http://"
                           "etherx.jabber.org/streams' xmlns:db='jabber:"
                           "server:dialback' from='a.test' to='b.test' "
                           "version='1.0'>"));
    free(take(out));
}

/* Runs steps with every step's bytes split at split (clamped). */
static void run_steps(const struct step *steps,
                      size_t n,
                      size_t split,
                      const char *final_id)
{
    struct side out;
    out_open(&out);
    for (size_t i = 0; i < n; i++) {
        const char *p = steps[i].peer;
        size_t len = strlen(p);
        size_t k = split < len ? split : len;
        ck_assert_int_eq(s2s_stream_feed(out.s, p, k), 0);
        ck_assert_int_eq(s2s_stream_feed(out.s, p + k, len - k), 0);
        if (steps[i].expect != NULL) {
            ck_assert_msg(out_has(&out, steps[i].expect),
                          "step %zu split %zu: missing %s", i, split,
                          steps[i].expect);
        }
        ck_assert_int_eq(out.authenticated, i + 1 == n ? 1 : 0);
        free(take(&out));
        if (steps[i].tls) {
            ck_assert_int_eq(s2s_stream_state(out.s), S2S_TLS);
            s2s_stream_tls_done(out.s, true);
            ck_assert(out_has(&out, "<stream:stream "));
            free(take(&out));
        }
    }
    ck_assert_int_eq(out.auth_method, POLICY_AUTH_SASL_EXTERNAL);
    ck_assert_int_eq(s2s_stream_state(out.s), S2S_READY);
    ck_assert_str_eq(s2s_stream_id(out.s), final_id);
    ck_assert_int_eq(out.closed + out.auth_failed, 0);
    side_close(&out);
}

START_TEST(out_prosody_every_split)
{
    size_t max = 0;
    for (size_t i = 0; i < sizeof(prosody_steps) / sizeof(prosody_steps[0]);
         i++) {
        size_t l = strlen(prosody_steps[i].peer);
        max = l > max ? l : max;
    }
    for (size_t split = 0; split <= max; split++) {
        run_steps(prosody_steps,
                  sizeof(prosody_steps) / sizeof(prosody_steps[0]), split,
                  "p3");
    }
}
END_TEST

START_TEST(out_ejabberd_every_split)
{
    size_t n = sizeof(ejabberd_steps) / sizeof(ejabberd_steps[0]);
    size_t max = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(ejabberd_steps[i].peer);
        max = l > max ? l : max;
    }
    for (size_t split = 0; split <= max; split++) {
        run_steps(ejabberd_steps, n, split, "e3");
    }
}
END_TEST

START_TEST(out_prosody_byte_by_byte)
{
    struct side out;
    out_open(&out);
    size_t n = sizeof(prosody_steps) / sizeof(prosody_steps[0]);
    for (size_t i = 0; i < n; i++) {
        const char *p = prosody_steps[i].peer;
        for (size_t k = 0; p[k] != '\0'; k++) {
            ck_assert_int_eq(s2s_stream_feed(out.s, p + k, 1), 0);
        }
        if (prosody_steps[i].tls) {
            s2s_stream_tls_done(out.s, true);
        }
    }
    ck_assert_int_eq(out.authenticated, 1);
    ck_assert_int_eq(s2s_stream_state(out.s), S2S_READY);
    side_close(&out);
}
END_TEST

/* <success/>, the new header and the features in one read: the bytes
 * after <success/> belong to the restarted stream. */
START_TEST(out_success_and_restart_in_one_read)
{
    struct side out;
    out_open(&out);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(feed(&out, prosody_steps[i].peer), 0);
        if (prosody_steps[i].tls) {
            s2s_stream_tls_done(out.s, true);
        }
    }
    ck_assert_int_eq(
        feed(&out,
             "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" PEER_HDR(
                 "p3") "<stream:features/>"),
        0);
    ck_assert_int_eq(out.authenticated, 1);
    ck_assert_str_eq(s2s_stream_id(out.s), "p3");
    side_close(&out);
}
END_TEST

START_TEST(out_proceed_injection_discarded)
{
    struct side out;
    out_open(&out);
    ck_assert_int_eq(feed(&out, prosody_steps[0].peer), 0);
    ck_assert_int_eq(
        feed(&out, "<proceed xmlns=" NS_TLS_Q "/><success xmlns='urn:ietf:"
                   "params:xml:ns:xmpp-sasl'/><db:result from='b.test' "
                   "to='a.test' type='valid'/>"),
        0);
    ck_assert_int_eq(out.want_tls, 1);
    s2s_stream_tls_done(out.s, true);
    ck_assert_int_eq(out.authenticated, 0);
    ck_assert_int_eq(s2s_stream_state(out.s), S2S_OPENING);
    ck_assert_int_eq(feed(&out, prosody_steps[2].peer), 0);
    ck_assert_int_eq(out.authenticated, 0);
    ck_assert(out_has(&out, "<auth "));
    side_close(&out);
}
END_TEST

START_TEST(out_sasl_failure_without_dialback)
{
    struct side out;
    out_open(&out);
    ck_assert_int_eq(feed(&out, prosody_steps[0].peer), 0);
    ck_assert_int_eq(feed(&out, prosody_steps[1].peer), 0);
    s2s_stream_tls_done(out.s, true);
    /* A peer that declares no dialback at all (no xmlns:db, no feature). */
    ck_assert_int_eq(
        feed(&out, "<stream:stream xmlns='jabber:server' xmlns:stream="
                   "'http://etherx.jabber.org/streams' version='1.0' "
                   "id='x'><stream:features><mechanisms xmlns='urn:ietf:"
                   "params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism>"
                   "</mechanisms></stream:features>"),
        0);
    ck_assert(out_has(&out, "<auth "));
    int rc = feed(&out, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                        "<not-authorized/></failure>");
    ck_assert_int_eq(rc, ERR_AUTH);
    ck_assert_int_eq(out.auth_failed, 1);
    ck_assert_int_eq(out.closed, 1);
    ck_assert(!out_has(&out, "<db:result"));
    side_close(&out);
}
END_TEST

/* Also pins the key's argument order to the XEP-0185 vector (DESIGN.md
 * section 4): receiving = the peer, originating = us, the peer's id. */
START_TEST(out_legacy_dialback)
{
    struct side out;
    memset(&out, 0, sizeof(out));
    struct s2s_stream_config oc = out_config("example.org", "xmpp.example.com");
    oc.tls_required = false;
    side_open(&out, &oc);
    ck_assert_int_eq(s2s_stream_start(out.s), 0);
    free(take(&out));
    /* A pre-1.0 server: no version, no features, only xmlns:db. */
    ck_assert_int_eq(feed(&out, "<stream:stream xmlns='jabber:server' "
                                "xmlns:stream='http://etherx.jabber.org/"
                                "streams' xmlns:db='jabber:server:dialback' "
                                "id='D60000229F'>"),
                     0);
    ck_assert(out_has(&out, "<db:result from='example.org' "
                            "to='xmpp.example.com'>37c69b1cf07a3f67c04a5ef5"
                            "902fa5114f2c76fe4a2686482ba5b89323075643"
                            "</db:result>"));
    ck_assert_int_eq(feed(&out, "<db:result from='xmpp.example.com' "
                                "to='example.org' type='valid'/>"),
                     0);
    ck_assert_int_eq(out.authenticated, 1);
    ck_assert_int_eq(out.auth_method, POLICY_AUTH_DIALBACK);
    side_close(&out);
}
END_TEST

START_TEST(out_no_version_no_dialback)
{
    struct side out;
    out_open(&out);
    int rc = feed(&out, "<stream:stream xmlns='jabber:server' xmlns:stream="
                        "'http://etherx.jabber.org/streams' id='x'>");
    ck_assert_int_ne(rc, 0);
    ck_assert_str_eq(out.close_condition, "unsupported-version");
    side_close(&out);
}
END_TEST

/* a.test -> b.test authenticated by dialback over direct TLS. */
static void out_open_auth(struct side *out)
{
    memset(out, 0, sizeof(*out));
    struct s2s_stream_config oc = out_config("a.test", "b.test");
    oc.tls_active = true;
    oc.cert_usable = false;
    side_open(out, &oc);
    ck_assert_int_eq(s2s_stream_start(out->s), 0);
    ck_assert_int_eq(feed(out, PEER_HDR("d1") "<stream:features><dialback "
                                              "xmlns='urn:xmpp:features:"
                                              "dialback'><errors/></dialback>"
                                              "</stream:features>"),
                     0);
    ck_assert(out_has(out, "<db:result from='a.test' to='b.test'>"));
    ck_assert_int_eq(
        feed(out, "<db:result from='b.test' to='a.test' type='valid'/>"), 0);
    ck_assert_int_eq(out->authenticated, 1);
    free(take(out));
}

START_TEST(out_dialback_error_result)
{
    struct side out;
    memset(&out, 0, sizeof(out));
    struct s2s_stream_config oc = out_config("a.test", "b.test");
    oc.tls_active = true;
    side_open(&out, &oc);
    ck_assert_int_eq(s2s_stream_start(out.s), 0);
    ck_assert_int_eq(feed(&out, PEER_HDR("d1") "<stream:features><dialback "
                                               "xmlns='urn:xmpp:features:"
                                               "dialback'><errors/>"
                                               "</dialback></stream:features>"),
                     0);
    ck_assert_int_eq(
        feed(&out, "<db:result from='b.test' to='a.test' type='error'>"
                   "<error type='cancel'><item-not-found xmlns='urn:ietf:"
                   "params:xml:ns:xmpp-stanzas'/></error></db:result>"),
        ERR_AUTH);
    ck_assert_int_eq(out.auth_failed, 1);
    ck_assert_str_eq(out.fail_reason, "dialback error: item-not-found");
    ck_assert_int_eq(out.authenticated, 0);
    side_close(&out);
}
END_TEST

START_TEST(out_stanza_from_peer_refused)
{
    struct side out;
    out_open_auth(&out);
    int rc = feed(&out, "<message from='b.test' to='a.test'/>");
    ck_assert_int_eq(rc, ERR_AUTH);
    ck_assert_str_eq(out.close_condition, "not-authorized");
    ck_assert_int_eq(out.stanzas, 0);
    side_close(&out);
}
END_TEST

START_TEST(out_send_checks_pair)
{
    struct side out;
    out_open_auth(&out);
    struct xml_node *m = make_message("mallory@c.test", "x@b.test", "x");
    ck_assert_int_eq(s2s_stream_send(out.s, m), ERR_AUTH);
    xml_unref(m);
    m = make_message("romeo@a.test", "x@other.test", "x");
    ck_assert_int_eq(s2s_stream_send(out.s, m), ERR_AUTH);
    xml_unref(m);
    ck_assert_uint_eq(buf_size(s2s_stream_output(out.s)), 0);
    m = make_message("romeo@a.test", "juliet@b.test", "x");
    ck_assert_int_eq(s2s_stream_send(out.s, m), 0);
    xml_unref(m);
    /* jabber:client in, jabber:server on the wire: no xmlns written. */
    ck_assert(out_has(&out, "<message from='romeo@a.test' "
                            "to='juliet@b.test'><body>x</body></message>"));
    side_close(&out);
}
END_TEST

START_TEST(out_send_all_or_nothing)
{
    struct side out;
    out_open_auth(&out);
    char *body = malloc(70 * 1024);
    ck_assert_ptr_nonnull(body);
    memset(body, 'z', 70 * 1024 - 1);
    body[70 * 1024 - 1] = '\0';
    struct xml_node *m = make_message("a.test", "b.test", body);
    free(body);
    ck_assert_int_eq(s2s_stream_send(out.s, m), ERR_TOO_BIG);
    xml_unref(m);
    ck_assert_uint_eq(buf_size(s2s_stream_output(out.s)), 0);
    side_close(&out);
}
END_TEST

START_TEST(out_verify_answer_matched)
{
    struct side out;
    out_open_auth(&out);
    ck_assert_int_eq(
        s2s_stream_send_verify(out.s, "a.test", "b.test", "ID1", "k1"), 0);
    ck_assert(out_has(&out, "<db:verify from='a.test' to='b.test' id='ID1'>"
                            "k1</db:verify>"));
    /* Wrong id: ignored. */
    ck_assert_int_eq(feed(&out, "<db:verify from='b.test' to='a.test' "
                                "id='ID2' type='valid'/>"),
                     0);
    ck_assert_int_eq(out.verify_result, 0);
    ck_assert_int_eq(feed(&out, "<db:verify from='b.test' to='a.test' "
                                "id='ID1' type='invalid'>k1</db:verify>"),
                     0);
    ck_assert_int_eq(out.verify_result, 1);
    ck_assert(!out.vr_valid);
    ck_assert_str_eq(out.vr_id, "ID1");
    side_close(&out);
}
END_TEST

START_TEST(keepalive_only_when_ready)
{
    struct side out;
    out_open(&out);
    ck_assert_int_eq(s2s_stream_keepalive(out.s), ERR_AGAIN);
    ck_assert_uint_eq(buf_size(s2s_stream_output(out.s)), 0);
    side_close(&out);
    out_open_auth(&out);
    ck_assert_int_eq(s2s_stream_keepalive(out.s), 0);
    ck_assert_str_eq(buf_peek(s2s_stream_output(out.s)), " ");
    s2s_stream_close(out.s, NULL, NULL);
    ck_assert_int_eq(s2s_stream_keepalive(out.s), ERR_CLOSED);
    ck_assert_int_eq(out.closed, 1);
    side_close(&out);
}
END_TEST

static Suite *s2sstream_suite(void)
{
    Suite *s = suite_create("s2sstream");
    TCase *tc = tcase_create("pair");
    tcase_add_test(tc, pair_starttls_sasl_external);
    tcase_add_test(tc, pair_direct_tls);
    tcase_add_test(tc, pair_starttls_dialback_valid);
    tcase_add_test(tc, pair_starttls_dialback_wrong_secret);
    tcase_add_test(tc, pair_tls_required_not_offered);
    tcase_add_test(tc, pair_policy_denies_dialback);
    tcase_add_test(tc, pair_sasl_failure_falls_back_to_dialback);
    tcase_add_test(tc, pair_add_pair_multiplexed);
    suite_add_tcase(s, tc);

    tc = tcase_create("in");
    tcase_add_test(tc, in_header_answer);
    tcase_add_test(tc, in_features_before_and_after_tls);
    tcase_add_test(tc, in_no_mechanisms_without_cert);
    tcase_add_test(tc, in_sasl_external_restart);
    tcase_add_test(tc, in_sasl_authzid_equals_sign);
    tcase_add_test(tc, in_sasl_authzid_mismatch);
    tcase_add_test(tc, in_sasl_unknown_mechanism);
    tcase_add_test(tc, in_sasl_cert_not_valid);
    tcase_add_test(tc, in_stanza_before_auth);
    tcase_add_test(tc, in_invalid_from);
    tcase_add_test(tc, in_host_unknown_to);
    tcase_add_test(tc, in_improper_addressing);
    tcase_add_test(tc, in_stanza_accepted_case_insensitive);
    tcase_add_test(tc, in_wrong_default_namespace);
    tcase_add_test(tc, in_version_0_9);
    tcase_add_test(tc, in_version_missing);
    tcase_add_test(tc, in_to_not_served);
    tcase_add_test(tc, in_oversized_before_auth);
    tcase_add_test(tc, in_oversized_after_auth);
    tcase_add_test(tc, in_doctype_restricted);
    tcase_add_test(tc, in_starttls_injection_discarded);
    tcase_add_test(tc, in_restart_cannot_change_to);
    tcase_add_test(tc, in_starttls_not_offered);
    tcase_add_test(tc, in_tls_failed);
    tcase_add_test(tc, in_dialback_before_tls_refused);
    tcase_add_test(tc, in_dialback_key_not_verified);
    tcase_add_test(tc, in_dialback_unserved_target_error);
    tcase_add_test(tc, in_dialback_unserved_without_db_prefix);
    tcase_add_test(tc, in_db_verify_valid);
    tcase_add_test(tc, in_db_verify_invalid);
    tcase_add_test(tc, in_db_verify_after_rotation);
    tcase_add_test(tc, in_db_verify_previous_dropped);
    tcase_add_test(tc, in_peer_close_answered);
    tcase_add_test(tc, in_peer_stream_error_reported);
    tcase_add_test(tc, in_send_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("out");
    tcase_add_test(tc, out_prosody_every_split);
    tcase_add_test(tc, out_ejabberd_every_split);
    tcase_add_test(tc, out_prosody_byte_by_byte);
    tcase_add_test(tc, out_success_and_restart_in_one_read);
    tcase_add_test(tc, out_proceed_injection_discarded);
    tcase_add_test(tc, out_sasl_failure_without_dialback);
    tcase_add_test(tc, out_legacy_dialback);
    tcase_add_test(tc, out_no_version_no_dialback);
    tcase_add_test(tc, out_dialback_error_result);
    tcase_add_test(tc, out_stanza_from_peer_refused);
    tcase_add_test(tc, out_send_checks_pair);
    tcase_add_test(tc, out_send_all_or_nothing);
    tcase_add_test(tc, out_verify_answer_matched);
    tcase_add_test(tc, keepalive_only_when_ready);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_setup(LOG_LEVEL_ERROR, false, "check_s2sstream");
    SRunner *sr = srunner_create(s2sstream_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
