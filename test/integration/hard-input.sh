#!/bin/bash
# hard-input.sh: bad input from a hostile s2s peer (issue "Bad input and
# load"), with a real peer (Prosody b.test) federating through fedgate
# before and after every group. Topology and helpers: hard-lib.sh.
#
# Each case is one connection of test/tools/s2s-attack.py and must end
# with exactly the RFC 6120 stream error listed (none: a clean close),
# a "stream error sent COND" line in fedgate's log naming the
# attacker's address and port, and fedgate still answering a new stream.
# After each group: bob@b.test <-> a.test still works both ways and
# fedgate's VmRSS is within HARD_RSS_MARGIN of its baseline.
#
# Groups: plain TCP before authentication (XML bombs, external entities,
# DOCTYPE, comments/PIs, deep nesting, huge names and attribute values,
# invalid UTF-8 and UTF-16, oversized stanzas, stanzas and unknown
# elements before authentication, bad headers, unknown 'to'); the same
# inside STARTTLS and on the direct TLS port; after SASL EXTERNAL as
# evil.test (spoofed 'from', unknown 'to', oversized and deep stanzas,
# entities, invalid UTF-8, a second auth); a stream error whose text
# tries to forge a log line; STARTTLS command injection.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=test/integration/hard-lib.sh
. "$(dirname "$0")/hard-lib.sh"
fg_init hard-input 110

hard_setup

# ---- before authentication, plain TCP ----------------------------------------
hard_cases plain \
    raw:doctype=restricted-xml \
    raw:billion-laughs=restricted-xml \
    raw:xxe=restricted-xml \
    raw:xxe-param=restricted-xml \
    raw:xxe-public=restricted-xml \
    raw:entity-in-header=restricted-xml \
    header:entity-ref=restricted-xml \
    header:entity-inline-dtd=not-well-formed \
    header:comment=restricted-xml \
    header:pi=restricted-xml \
    header:deep=policy-violation \
    header:huge-attr-value=policy-violation \
    header:huge-attr-name=policy-violation \
    header:huge-name=policy-violation \
    raw:huge-header-attr=policy-violation \
    raw:many-ns=none \
    header:dup-attrs=not-well-formed \
    header:oversize=policy-violation \
    header:bad-utf8-text=unsupported-encoding \
    header:bad-utf8-attr=unsupported-encoding \
    header:bad-utf8-name=unsupported-encoding \
    header:bad-utf8-overlong=unsupported-encoding \
    header:bad-utf8-surrogate=unsupported-encoding \
    header:bad-utf8-truncated=unsupported-encoding \
    raw:bad-utf8-header=unsupported-encoding \
    raw:utf16=unsupported-encoding \
    raw:utf16-nobom=unsupported-encoding \
    raw:latin1-decl=unsupported-encoding \
    header:ctrl-char=not-well-formed \
    header:nul=not-well-formed \
    raw:not-xml=not-well-formed \
    raw:tls-garbage=not-well-formed \
    header:stanza-preauth=not-authorized \
    header:iq-preauth=not-authorized \
    header:unknown-element=not-authorized \
    header:db-result-unknown=policy-violation \
    raw:unknown-to=host-unknown \
    raw:no-to=improper-addressing \
    raw:bad-to=improper-addressing \
    raw:bad-ns=invalid-namespace \
    raw:bad-root=invalid-namespace \
    raw:bad-version=unsupported-version \
    header:clean-close=none
hard_relay_ok
hard_rss_check "after the plain group"

# ---- inside STARTTLS --------------------------------------------------------------
hard_cases starttls \
    tlsraw:doctype=restricted-xml \
    tlsraw:billion-laughs=restricted-xml \
    tlsraw:xxe=restricted-xml \
    tls:entity-ref=restricted-xml \
    tls:comment=restricted-xml \
    tls:deep=policy-violation \
    tls:huge-attr-value=policy-violation \
    tls:huge-name=policy-violation \
    tls:oversize=policy-violation \
    tls:bad-utf8-text=unsupported-encoding \
    tlsraw:utf16=unsupported-encoding \
    tls:stanza-preauth=not-authorized \
    tls:unknown-element=not-authorized \
    tlsraw:unknown-to=improper-addressing \
    tls:starttls-again=none \
    tls:db-result-nokey=bad-format
hard_relay_ok
hard_rss_check "after the STARTTLS group"

# ---- direct TLS (XEP-0368) -----------------------------------------------------------
hard_cases direct \
    directraw:doctype=restricted-xml \
    directraw:billion-laughs=restricted-xml \
    direct:entity-ref=restricted-xml \
    direct:deep=policy-violation \
    direct:huge-attr-name=policy-violation \
    direct:oversize=policy-violation \
    direct:bad-utf8-attr=unsupported-encoding \
    directraw:utf16-nobom=unsupported-encoding \
    direct:stanza-preauth=not-authorized \
    directraw:unknown-to=host-unknown \
    directraw:bad-ns=invalid-namespace
hard_relay_ok
hard_rss_check "after the direct TLS group"

# ---- after SASL EXTERNAL as evil.test -----------------------------------------------------
hard_cases sasl \
    sasl:spoofed-from=invalid-from \
    sasl:spoofed-from-bare=invalid-from \
    sasl:unknown-to-stanza=host-unknown \
    sasl:other-local=host-unknown \
    sasl:no-from=improper-addressing \
    sasl:bad-jid=improper-addressing \
    sasl:bigok=none \
    sasl:deep-ok=none \
    sasl:cdata=none \
    sasl:deep=policy-violation \
    sasl:huge-attr-value=policy-violation \
    sasl:entity-ref=restricted-xml \
    sasl:entity-inline-dtd=not-well-formed \
    sasl:comment=restricted-xml \
    sasl:pi=restricted-xml \
    sasl:bad-utf8-text=unsupported-encoding \
    sasl:bad-utf8-surrogate=unsupported-encoding \
    sasl:auth-again=policy-violation \
    sasl:starttls-again=none \
    sasl:unknown-element=unsupported-stanza-type
# Above stanza_max_preauth is fine once authenticated (bigok, 200 KiB);
# above limits.stanza_max (512 KiB) is not.
hard_cases sasl-oversize --n=600000 sasl:oversize=policy-violation
hard_relay_ok
hard_rss_check "after the SASL group"

# ---- a stream error that tries to forge a log line --------------------------------------
HARD_MARK=$(log_mark "$HARD_LOG")
hard_cases log-inject header:log-inject=none sasl:log-inject=none
if tail -c "+$((HARD_MARK + 1))" "$HARD_LOG" | grep -q '^2000-01-01T00:00:00.000Z'; then
    fail "a peer's stream error text forged a line in fedgate's log:" \
        "$(tail -c "+$((HARD_MARK + 1))" "$HARD_LOG" | grep -m1 '^2000-01-01')"
fi
tail -c "+$((HARD_MARK + 1))" "$HARD_LOG" | grep -q 'stream error from peer undefined-condition: bye\\x0a2000-01-01' ||
    fail "fedgate did not log the peer's stream error text escaped"

# ---- STARTTLS command injection ------------------------------------------------------------
hard_cases starttls-inject header:starttls-inject=none
wait_for_log "$HARD_LOG" 'discarding [0-9]+ plaintext bytes after STARTTLS' 5 "$HARD_MARK" ||
    fail "fedgate did not say it dropped the plaintext injected after STARTTLS"

hard_relay_ok
hard_rss_check "at the end"
fedgate_stop "$HARD_GW"
fg_finish
