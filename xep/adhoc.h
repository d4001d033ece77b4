/*
 * adhoc.h: what the XEP-0050 protocol machine (xep0050_adhoc.c) and its
 * commands (adhoc_status.c, adhoc_control.c, adhoc_peers.c) share: the
 * session and command types, the data-form builders and the reply
 * helpers. Internal to xep/: nothing outside includes it.
 */
#ifndef FEDGATE_ADHOC_H
#define FEDGATE_ADHOC_H

#include <stdbool.h>
#include <stddef.h>

#include "xep.h"

#define ADHOC_NS        "http://jabber.org/protocol/commands"
#define ADHOC_DATA_NS   "jabber:x:data"
#define ADHOC_INFO_NS   "http://jabber.org/protocol/disco#info"
#define ADHOC_ITEMS_NS  "http://jabber.org/protocol/disco#items"
#define ADHOC_FORM_TYPE "urn:fedgate:admin"

#define ADHOC_SESSIONS_MAX 16
#define ADHOC_SESSION_MS   (10ull * 60ull * 1000ull)
#define ADHOC_VALUES_MAX   14
#define ADHOC_VALUE_MAX    1024 /* bytes of one submitted value */
#define ADHOC_JID_MAX      3071 /* RFC 7622: 1023 + 1 + 1023 + 1 + 1023 */

struct adhoc_value {
    char var[32];
    char *value;
};

struct adhoc_session {
    bool used;
    char id[40];
    char *owner; /* full JID that started it */
    const struct adhoc_command *cmd;
    unsigned stage;
    unsigned long long expires_ms;
    struct adhoc_value values[ADHOC_VALUES_MAX];
};

struct adhoc_state {
    struct adhoc_session sessions[ADHOC_SESSIONS_MAX];
    unsigned long seq;
};

/* A data form under construction: helpers do nothing once rc is set,
 * so a builder checks rc once at the end. */
struct form {
    struct xml_node *x;
    int rc;
};

struct adhoc_pending;

struct adhoc_command {
    const char *node;
    const char *name;
    unsigned nstages; /* input forms before the command runs */
    /* Writes the form of stage (< nstages) into f. */
    void (*form)(const struct xep_context *ctx,
                 const struct adhoc_session *s,
                 unsigned stage,
                 struct form *f);
    /* Runs the command, adding notes and a result form to cmd. 0 or
     * ERR_NOMEM. */
    int (*run)(const struct xep_context *ctx,
               const struct adhoc_session *s,
               struct xml_node *cmd);
    /* Checks what the field types cannot, once the stage's form passed:
     * NULL, or why the submission is wrong (naming the field). May be
     * NULL. */
    const char *(*validate)(const struct adhoc_session *s, unsigned stage);
    /*
     * Instead of run, for a command whose outcome may come later (it runs
     * the home-server hook): as run, or ERR_AGAIN when pend now owns the
     * reply and sends it once the outcome is known, or ERR_INVAL with
     * why (naming the field): the session stays for a corrected
     * submission.
     */
    int (*run_async)(const struct xep_context *ctx,
                     const struct adhoc_session *s,
                     struct xml_node *cmd,
                     struct adhoc_pending *pend,
                     char *why,
                     size_t whylen);
};

/* A completed command's reply waiting for its outcome. */
struct adhoc_pending {
    struct xml_node *reply; /* owned */
    struct xml_node *cmd;   /* its <command/> */
    int (*send)(void *ud, struct xml_node *stanza);
    void *send_ud;
};

/* ---- data forms (helpers do nothing once f->rc is set) ---- */

/* Adds <x type=type> with an optional title and instructions to parent. */
void form_start(struct form *f,
                struct xml_node *parent,
                const char *type,
                const char *title,
                const char *instructions);
/* Adds a field (var NULL for a fixed one) with its value (a text-multi
 * value is split at newlines); the field, or NULL once f->rc is set. */
struct xml_node *form_field(struct form *f,
                            const char *var,
                            const char *type,
                            const char *label,
                            bool required,
                            const char *value);
void form_option(struct form *f,
                 struct xml_node *field,
                 const char *label,
                 const char *value);
/* The hidden FORM_TYPE field every fedgate form carries (XEP-0068). */
void form_type(struct form *f);
void form_fixed(struct form *f, const char *text);
/* Adds <name>text</name> to parent. 0 or ERR_NOMEM. */
int adhoc_text_child(struct xml_node *parent,
                     const char *ns,
                     const char *name,
                     const char *text);

/* ---- sessions and replies ---- */

/* The value kept for var, or NULL. */
const char *adhoc_get(const struct adhoc_session *s, const char *var);
/* The session owner's bare JID. */
void adhoc_bare(const struct adhoc_session *s, char *out, size_t outsz);
/* Adds <note type=type>text</note> to cmd. 0 or ERR_NOMEM. */
int adhoc_note(struct xml_node *cmd, const char *type, const char *text);
/* A note for a change's outcome: info when rc is 0, else error. */
int adhoc_outcome(struct xml_node *cmd, int rc, const char *msg);
/* s, or dflt when s is NULL or empty. */
const char *adhoc_or(const char *s, const char *dflt);
/* Unix time t as ISO 8601 UTC, "-" for none. */
void adhoc_time(long long t, char *out, size_t outsz);
/* A light domain check (the daemon normalises it). */
bool adhoc_domain_ok(const char *v);
/* Finishes a run_async command: adds the outcome, sends the reply, frees
 * pend (an xep_done_fn for the admin operations). */
void adhoc_pending_done(void *ud, int rc, const char *msg);

/* ---- the commands, in the order they are listed ---- */

extern const struct adhoc_command adhoc_cmd_list_peers;
extern const struct adhoc_command adhoc_cmd_peer_detail;
extern const struct adhoc_command adhoc_cmd_statistics;
extern const struct adhoc_command adhoc_cmd_set_log_level;
extern const struct adhoc_command adhoc_cmd_reload;
extern const struct adhoc_command adhoc_cmd_server_snippet;
extern const struct adhoc_command adhoc_cmd_block_domain;
extern const struct adhoc_command adhoc_cmd_unblock_domain;
extern const struct adhoc_command adhoc_cmd_disconnect_route;
extern const struct adhoc_command adhoc_cmd_retry_route;
extern const struct adhoc_command adhoc_cmd_rotate_dialback_secret;
extern const struct adhoc_command adhoc_cmd_audit_log;
extern const struct adhoc_command adhoc_cmd_add_peer;
extern const struct adhoc_command adhoc_cmd_edit_peer;
extern const struct adhoc_command adhoc_cmd_remove_peer;

#endif
