/*
 * peers.c: runtime changes to the peer list (see peers.h).
 *
 * Submitted values become the text of one peers entry, one key per line,
 * and go through conf_peer_parse: a runtime peer is checked by the same
 * key table as the file, and an error's line tells which field it was.
 */
#include "config.h"

#include "peers.h"

#include "err.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct conf_peer *peers_find(const struct conf *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->npeers; i++) {
        if (cfg->peers[i].domain != NULL &&
            strcmp(cfg->peers[i].domain, domain) == 0) {
            return &cfg->peers[i];
        }
    }
    return NULL;
}

/* What else in cfg uses domain ("served domain", ...), ignoring the peer
 * named skip; NULL when nothing does. */
static const char *peers_user_of(const struct conf *cfg,
                                 const char *domain,
                                 const char *skip,
                                 const char **owner)
{
    *owner = NULL;
    for (size_t i = 0; i < cfg->ndomains; i++) {
        if (strcmp(cfg->domains[i], domain) == 0) {
            return "a served domain";
        }
    }
    if (cfg->service_jid != NULL && strcmp(cfg->service_jid, domain) == 0) {
        return "fedgate's service_jid";
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct conf_peer *q = &cfg->peers[i];
        if (q->domain == NULL ||
            (skip != NULL && strcmp(q->domain, skip) == 0)) {
            continue;
        }
        *owner = q->domain;
        if (strcmp(q->domain, domain) == 0) {
            return "already a peer";
        }
        for (size_t j = 0; j < q->nservices; j++) {
            if (strcmp(q->services[j].domain, domain) == 0) {
                return "already a service of peer";
            }
        }
    }
    *owner = NULL;
    return NULL;
}

static int peers_check_domain(const struct conf *cfg,
                              const char *domain,
                              const char *skip,
                              char *err,
                              size_t errlen)
{
    const char *owner;
    const char *what = peers_user_of(cfg, domain, skip, &owner);
    if (what == NULL) {
        return 0;
    }
    if (owner != NULL && strcmp(owner, domain) != 0) {
        snprintf(err, errlen, "'%s' is %s '%s'", domain, what, owner);
    } else {
        snprintf(err, errlen, "'%s' is %s", domain, what);
    }
    return ERR_INVAL;
}

/* peers_check, naming in *part the key at fault. */
static int peers_check_part(const struct conf *cfg,
                            const struct conf_peer *p,
                            const char *replace,
                            char *err,
                            size_t errlen,
                            const char **part)
{
    *part = "domain";
    if (peers_check_domain(cfg, p->domain, replace, err, errlen) != 0) {
        return ERR_INVAL;
    }
    *part = "services";
    for (size_t j = 0; j < p->nservices; j++) {
        const char *s = p->services[j].domain;
        if (peers_check_domain(cfg, s, replace, err, errlen) != 0) {
            return ERR_INVAL;
        }
        if (strcmp(s, p->domain) == 0) {
            snprintf(err, errlen, "service '%s' is the peer's own domain", s);
            return ERR_INVAL;
        }
        for (size_t k = 0; k < j; k++) {
            if (strcmp(p->services[k].domain, s) == 0) {
                snprintf(err, errlen, "service '%s' is listed twice", s);
                return ERR_INVAL;
            }
        }
        if (p->services[j].secret == NULL && p->secret == NULL &&
            cfg->upstream_secret == NULL) {
            snprintf(err, errlen,
                     "no secret for service '%s': give the peer a secret "
                     "(upstream.secret is not set)",
                     s);
            return ERR_INVAL;
        }
    }
    *part = "secret";
    if (p->secret == NULL && cfg->upstream_secret == NULL) {
        snprintf(err, errlen,
                 "no secret for peer '%s': give it a secret (upstream.secret "
                 "is not set)",
                 p->domain);
        return ERR_INVAL;
    }
    *part = NULL;
    return 0;
}

int peers_check(const struct conf *cfg,
                const struct conf_peer *p,
                const char *replace,
                char *err,
                size_t errlen)
{
    const char *part;
    return peers_check_part(cfg, p, replace, err, errlen, &part);
}

int peers_put(struct conf *cfg, const struct conf_peer *p, const char *replace)
{
    struct conf_peer copy;
    const char *name = replace != NULL ? replace : p->domain;
    if (conf_peer_copy(&copy, p) != 0) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        if (strcmp(cfg->peers[i].domain, name) == 0) {
            conf_peer_clear(&cfg->peers[i]);
            cfg->peers[i] = copy;
            return 0;
        }
    }
    struct conf_peer *v =
        realloc(cfg->peers, (cfg->npeers + 1) * sizeof(*cfg->peers));
    if (v == NULL) {
        conf_peer_clear(&copy);
        return ERR_NOMEM;
    }
    cfg->peers = v;
    cfg->peers[cfg->npeers++] = copy;
    return 0;
}

int peers_remove(struct conf *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->npeers; i++) {
        if (strcmp(cfg->peers[i].domain, domain) == 0) {
            conf_peer_clear(&cfg->peers[i]);
            memmove(&cfg->peers[i], &cfg->peers[i + 1],
                    (cfg->npeers - i - 1) * sizeof(*cfg->peers));
            cfg->npeers--;
            return 0;
        }
    }
    return ERR_NOT_FOUND;
}

/* ---- submitted values -> one peers entry ---- */

enum peers_kind { PK_STRING, PK_BOOL, PK_NUMBER, PK_SERVICES };

static enum peers_kind peers_kind_of(const char *key)
{
    if (strcmp(key, "trusted") == 0 || strcmp(key, "tls_required") == 0) {
        return PK_BOOL;
    }
    if (strcmp(key, "port") == 0 || strcmp(key, "stanza_max") == 0) {
        return PK_NUMBER;
    }
    if (strcmp(key, "services") == 0) {
        return PK_SERVICES;
    }
    return PK_STRING;
}

/* A boolean as the file writes it, or NULL when v is none (XEP-0004
 * booleans are 1/0/true/false). */
static const char *peers_bool(const char *v)
{
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
        return "true";
    }
    if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0) {
        return "false";
    }
    return NULL;
}

static bool peers_digits(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 12) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i])) {
            return false;
        }
    }
    return true;
}

/* The secret current gives service domain, or NULL. */
static const char *peers_service_secret(const struct conf_peer *current,
                                        const char *domain,
                                        size_t len)
{
    for (size_t j = 0; current != NULL && j < current->nservices; j++) {
        const char *d = current->services[j].domain;
        if (strlen(d) == len && strncmp(d, domain, len) == 0) {
            return current->services[j].secret;
        }
    }
    return NULL;
}

/* services = ( { domain = "..."; [secret = "...";] }, ... ); on one line */
static void
peers_put_services(FILE *f, const char *v, const struct conf_peer *current)
{
    const char *sep = " \t\r\n,";
    bool first = true;
    fputs("services = (", f);
    for (const char *p = v + strspn(v, sep); *p != '\0'; p += strspn(p, sep)) {
        size_t len = strcspn(p, sep);
        char *d = strndup(p, len);
        if (d == NULL) {
            break; /* the caller sees ENOMEM through the stream */
        }
        fputs(first ? " { domain = " : ", { domain = ", f);
        conf_print_string(d, f);
        fputs(";", f);
        const char *secret = peers_service_secret(current, p, len);
        if (secret != NULL) {
            fputs(" secret = ", f);
            conf_print_string(secret, f);
            fputs(";", f);
        }
        fputs(" }", f);
        free(d);
        first = false;
        p += len;
    }
    fputs(" );\n", f);
}

static void peers_put_field(FILE *f,
                            const struct peers_field *fl,
                            const struct conf_peer *current)
{
    enum peers_kind kind = peers_kind_of(fl->key);
    const char *b = kind == PK_BOOL ? peers_bool(fl->value) : NULL;
    if (kind == PK_SERVICES) {
        peers_put_services(f, fl->value, current);
        return;
    }
    fprintf(f, "%s = ", fl->key);
    if (b != NULL) {
        fputs(b, f);
    } else if (kind == PK_NUMBER && peers_digits(fl->value)) {
        /* a 64-bit literal above INT_MAX, so the bounds see its value */
        fprintf(f, "%sL", fl->value);
    } else {
        conf_print_string(fl->value, f); /* a wrong type is reported */
    }
    fputs(";\n", f);
}

/* The text of one peers entry and, per line, the field it holds
 * (lines[l] = field index, n for none). */
static char *peers_text(const struct peers_field *fields,
                        size_t n,
                        const struct conf_peer *current,
                        size_t *lines,
                        size_t nlines)
{
    char *text = NULL;
    size_t len = 0;
    size_t line = 1;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < nlines; i++) {
        lines[i] = n;
    }
    bool has_secret = false;
    for (size_t i = 0; i < n; i++) {
        if (fields[i].value == NULL || fields[i].value[0] == '\0') {
            continue;
        }
        has_secret |= strcmp(fields[i].key, "secret") == 0;
        peers_put_field(f, &fields[i], current);
        if (line < nlines) {
            lines[line] = i;
        }
        line++;
    }
    if (!has_secret && current != NULL && current->secret != NULL) {
        fputs("secret = ", f);
        conf_print_string(current->secret, f);
        fputs(";\n", f);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* From "form:LINE: message\n...", the first message and its line. */
static void peers_first_error(const char *errors,
                              const char *label,
                              size_t *line,
                              char *err,
                              size_t errlen)
{
    size_t ll = strlen(label);
    const char *p = errors != NULL ? errors : "";
    *line = 0;
    if (strncmp(p, label, ll) == 0 && p[ll] == ':') {
        p += ll + 1;
        char *end;
        unsigned long l = strtoul(p, &end, 10);
        if (end != p && *end == ':') {
            *line = l;
            p = end + 1;
        }
        p += strspn(p, " ");
    }
    size_t n = strcspn(p, "\n");
    snprintf(err, errlen, "%.*s", (int)n, n > 0 ? p : "invalid peer");
}

#define PEERS_LINES_MAX 32

/* Parses text as one peers entry and checks it against cfg in place of
 * replace. The first error goes to err, its line to *line (parsing) or
 * the key at fault to *part (checking against cfg). */
static int peers_parse_checked(const struct conf *cfg,
                               const char *text,
                               const char *label,
                               const char *replace,
                               struct conf_peer *out,
                               char *err,
                               size_t errlen,
                               size_t *line,
                               const char **part)
{
    char *errors = NULL;
    size_t elen = 0;
    *line = 0;
    *part = NULL;
    FILE *ef = open_memstream(&errors, &elen);
    if (ef == NULL) {
        return ERR_NOMEM;
    }
    int rc = conf_peer_parse(text, label, cfg->tls_cert != NULL, out, ef);
    fclose(ef);
    if (rc == ERR_CONFIG) {
        peers_first_error(errors, label, line, err, errlen);
        rc = ERR_INVAL;
    } else if (rc == 0) {
        rc = peers_check_part(cfg, out, replace, err, errlen, part);
        if (rc != 0) {
            conf_peer_clear(out);
        }
    }
    free(errors);
    return rc;
}

int peers_from_fields(const struct conf *cfg,
                      const struct peers_field *fields,
                      size_t n,
                      const struct conf_peer *current,
                      struct conf_peer *out,
                      char *err,
                      size_t errlen,
                      size_t *bad)
{
    size_t lines[PEERS_LINES_MAX];
    size_t line = 0;
    const char *part = NULL;
    *bad = n;
    memset(out, 0, sizeof(*out));
    char *text = peers_text(fields, n, current, lines, PEERS_LINES_MAX);
    if (text == NULL) {
        return ERR_NOMEM;
    }
    int rc = peers_parse_checked(cfg, text, "form",
                                 current != NULL ? current->domain : NULL, out,
                                 err, errlen, &line, &part);
    free(text);
    if (rc == ERR_INVAL && line > 0 && line < PEERS_LINES_MAX) {
        *bad = lines[line];
    }
    for (size_t i = 0; rc == ERR_INVAL && part != NULL && i < n; i++) {
        if (strcmp(fields[i].key, part) == 0) {
            *bad = i;
        }
    }
    if (rc == 0) {
        out->runtime = true;
    }
    return rc;
}

char *peers_spec(const struct conf_peer *p)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) {
        return NULL;
    }
    conf_peer_print(p, f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

int peers_from_spec(const struct conf *cfg,
                    const char *domain,
                    const char *spec,
                    struct conf_peer *out,
                    char *err,
                    size_t errlen)
{
    char label[300];
    size_t line;
    const char *part;
    snprintf(label, sizeof(label), "state_db peer %s", domain);
    int rc = peers_parse_checked(cfg, spec, label, domain, out, err, errlen,
                                 &line, &part);
    if (rc == 0 && strcmp(out->domain, domain) != 0) {
        snprintf(err, errlen, "stored peer %s names domain '%s'", domain,
                 out->domain);
        conf_peer_clear(out);
        return ERR_INVAL;
    }
    if (rc == 0) {
        out->runtime = true;
    }
    return rc;
}
