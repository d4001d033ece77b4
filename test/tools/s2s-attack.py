#!/usr/bin/python3
# -*- coding: utf-8 -*-
"""s2s-attack.py: a hostile XMPP server-to-server peer, for fedgate's
bad-input and load tests (test/integration/hard-*.sh). Standard library
only (socket, ssl, asyncio): it writes raw bytes, so it can say what no
real server would.

  s2s-attack.py --host IP [--port 5269] [--tls-port 5270] --cafile CA
                [--cert C --key K] [--from evil.test] [--to a.test]
                [--bind IP] [--wait S] [--expect COND] CASE [CASE...]
  s2s-attack.py ... slowloris [--interval S] [--stage header|ws|starttls|tls]
  s2s-attack.py ... halfopen --count N (--hold S | --until-file F)
                [--bind-range IP-IP] [--full-header N] [--signal F]
  s2s-attack.py ... storm --count N [--concurrency K]

A payload CASE is STAGE:NAME. STAGE is what is set up before the
payload's bytes are written:
  raw      plain TCP on the STARTTLS port; the payload is the whole stream
  header   plain TCP, a valid stream header, the features read
  tls      STARTTLS, then a new header inside TLS, the features read
  tlsraw   STARTTLS; the payload is the whole stream inside TLS
  direct   XEP-0368 direct TLS (--tls-port), header, features read
  directraw  direct TLS; the payload is the whole stream
  sasl     STARTTLS with the client certificate (--cert/--key), SASL
           EXTERNAL as --from, stream restart, features read: the payload
           goes to an authenticated stream
NAME is one of the payloads listed by --list. After the payload the tool
reads until fedgate closes the connection (or --wait seconds pass) and
prints one line:

  result CASE port=P condition=COND closed=0|1 ms=N sent=N/N text="..."

(P: our source port, which names the connection in fedgate's log.)

COND is the stream error condition fedgate sent, "none" when it closed
without one, "open" when the connection was still open after --wait.
With --expect COND (one per CASE, or one for all) the exit status is 0
only when every case ended with that condition; a payload that names its
own expectation (see --list) is checked against it without --expect.
Exit status: 0 all as expected, 1 a case differed, 2 set-up failed (could
not connect, TLS or SASL refused), 3 usage, 4 (--check-alive) fedgate no
longer answers a new stream after a case.

Load modes print "key=value" summaries (see each function) and exit 0
when their own checks pass.
"""

import argparse
import asyncio
import base64
import os
import re
import socket
import ssl
import sys
import time

NS_STREAM = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
ERR_RE = re.compile(
    rb"<stream:error>\s*<([a-z-]+)\s+xmlns=['\"]urn:ietf:params:xml:ns:xmpp-streams['\"]")
TEXT_RE = re.compile(
    rb"<text\s+xmlns=['\"]urn:ietf:params:xml:ns:xmpp-streams['\"]>(.*?)</text>", re.S)


class SetupError(Exception):
    pass


def header(to, frm=None, extra="", decl=True, version="1.0", ns="jabber:server"):
    s = "<?xml version='1.0'?>" if decl else ""
    s += ("<stream:stream xmlns='%s' xmlns:stream='%s' "
          "xmlns:db='jabber:server:dialback'" % (ns, NS_STREAM))
    if to is not None:
        s += " to='%s'" % to
    if frm is not None:
        s += " from='%s'" % frm
    if version is not None:
        s += " version='%s'" % version
    return (s + extra + ">").encode()


# ---- payloads --------------------------------------------------------------
#
# Each returns bytes given the options; raw payloads build their own
# header. EXPECT maps a payload to the condition fedgate must answer.

def lol_dtd(levels=9):
    d = "<!DOCTYPE stream:stream [<!ENTITY lol0 'lol'>"
    for i in range(1, levels + 1):
        d += "<!ENTITY lol%d '%s'>" % (i, ("&lol%d;" % (i - 1)) * 10)
    return d + "]>"


def msg(o, body="hi", frm=None, to=None, extra=""):
    frm = frm or "mallory@" + (o.frm or "evil.test")
    to = to or "alice@" + o.to
    return ("<message from='%s' to='%s' type='chat' id='atk'%s><body>%s</body></message>"
            % (frm, to, extra, body)).encode()


def p_doctype(o):
    return b"<?xml version='1.0'?><!DOCTYPE stream:stream>" + header(o.to, o.frm, decl=False)


def p_billion_laughs(o):
    return (b"<?xml version='1.0'?>" + lol_dtd().encode() +
            header(o.to, o.frm, decl=False, extra=" x='&lol9;'"))


def p_xxe(o):
    return (b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY xxe SYSTEM "
            b"'file:///etc/passwd'>]>" + header(o.to, o.frm, decl=False) + b"&xxe;")


def p_xxe_param(o):
    return (b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY % p SYSTEM "
            b"'http://127.0.0.1:1/x.dtd'> %p;]>" + header(o.to, o.frm, decl=False))


def p_xxe_public(o):
    return (b"<?xml version='1.0'?><!DOCTYPE stream:stream PUBLIC '-//X//Y' "
            b"'file:///etc/shadow'>" + header(o.to, o.frm, decl=False))


def p_entity_in_header(o):
    return header(o.to, o.frm, extra=" x='&lol;'")


def p_entity_ref(o):
    return msg(o, body="&xxe;")


def p_entity_inline_dtd(o):
    # a DOCTYPE where only content may come: not well-formed
    return lol_dtd().encode() + msg(o, body="&lol9;")


def p_comment(o):
    return b"<!-- hello -->"


def p_pi(o):
    return b"<?evil payload?>"


def p_cdata_ok_then_close(o):
    # not an attack: CDATA is allowed XML (a check that the parser is sane)
    return msg(o, body="<![CDATA[<a>&amp;</a>]]>") + b"</stream:stream>"


def p_deep(o):
    n = o.n or 10000
    return b"<message>" + b"<a>" * n


def p_deep_ok(o):
    # 50 levels (< depth_max 64) then a clean end: accepted post-auth
    return msg(o, body="<x>" * 50 + "</x>" * 50) + b"</stream:stream>"


def p_huge_attr_value(o):
    n = o.n or 2 * 1024 * 1024
    return b"<message x='" + b"A" * n + b"'/>"


def p_huge_attr_name(o):
    n = o.n or 2 * 1024 * 1024
    return b"<message " + b"a" * n + b"='1'/>"


def p_huge_name(o):
    n = o.n or 2 * 1024 * 1024
    return b"<" + b"m" * n + b"/>"


def p_huge_header_attr(o):
    n = o.n or 2 * 1024 * 1024
    return header(o.to, o.frm, extra=" x='" + "A" * n + "'")


def p_many_attrs(o):
    # 5,000 attributes: far below the size limit, many hash entries
    attrs = "".join(" a%d='%d'" % (i, i) for i in range(o.n or 5000))
    return ("<message%s/>" % attrs).encode()


def p_dup_attrs(o):
    return b"<message to='a' to='b'/>"


def p_many_ns(o):
    # namespace declarations on the header, within the size limit, then a
    # clean end
    decl = "".join(" xmlns:p%d='urn:x:%d'" % (i, i) for i in range(o.n or 2000))
    return header(o.to, o.frm, extra=decl) + b"</stream:stream>"


def p_oversize(o):
    n = o.n or 100 * 1024
    return msg(o, body="B" * n)


def p_bigok(o):
    # between stanza_max_preauth and stanza_max: fine once authenticated
    n = o.n or 200 * 1024
    return msg(o, body="C" * n) + b"</stream:stream>"


def p_flood(o):
    # --n messages of 1 KiB to alice as fast as TCP takes them, then a
    # clean end: whatever the home server's pace, fedgate's memory must
    # stay bounded (it stops reading, not buffering without end)
    one = msg(o, body="F" * 1024)
    return one * (o.n or 20000) + b"</stream:stream>"


def p_bad_utf8_text(o):
    return msg(o, body="%s").replace(b"%s", b"ab\xffcd")


def p_bad_utf8_attr(o):
    return b"<message to='alice@a.test\xfe' from='x@evil.test'/>"


def p_bad_utf8_name(o):
    return b"<message\xc0\xaf/>"


def p_bad_utf8_overlong(o):
    return msg(o, body="%s").replace(b"%s", b"\xc0\xbc")


def p_bad_utf8_surrogate(o):
    return msg(o, body="%s").replace(b"%s", b"\xed\xa0\x80")


def p_bad_utf8_truncated(o):
    return msg(o, body="%s").replace(b"%s", b"\xe2\x82")


def p_bad_utf8_header(o):
    return header(o.to, o.frm, extra=" x='\xff'").replace(b"\xc3\xbf", b"\xff")


def p_utf16(o):
    return b"\xff\xfe" + header(o.to, o.frm, decl=False).decode().encode("utf-16-le")


def p_utf16_nobom(o):
    return header(o.to, o.frm, decl=False).decode().encode("utf-16-be")


def p_latin1_decl(o):
    return (b"<?xml version='1.0' encoding='ISO-8859-1'?>" +
            header(o.to, o.frm, decl=False))


def p_ctrl_char(o):
    return msg(o, body="%s").replace(b"%s", b"\x01")


def p_nul(o):
    return msg(o, body="%s").replace(b"%s", b"\x00")


def p_not_xml(o):
    return b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"


def p_tls_garbage(o):
    # a TLS ClientHello on the STARTTLS port
    return b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32


def p_stanza_preauth(o):
    return msg(o, frm="mallory@b.test")


def p_iq_preauth(o):
    return ("<iq type='get' id='1' from='b.test' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
            % o.to).encode()


def p_unknown_element(o):
    return b"<foo xmlns='urn:x:evil'/>"


def p_unknown_to(o):
    return header("unknown.test", o.frm)


def p_no_to(o):
    return header(None, o.frm)


def p_bad_to(o):
    return header("a..test", o.frm)


def p_bad_ns(o):
    return header(o.to, o.frm, ns="jabber:client")


def p_bad_root(o):
    return b"<?xml version='1.0'?><foo xmlns='jabber:server' to='a.test'>"


def p_bad_version(o):
    return header(o.to, o.frm, version="0.9")


def p_second_header(o):
    return header(o.to, o.frm, decl=False)


def p_spoofed_from(o):
    return msg(o, frm="mallory@b.test")


def p_spoofed_from_bare(o):
    return ("<presence from='b.test' to='alice@%s'/>" % o.to).encode()


def p_unknown_to_stanza(o):
    return msg(o, to="alice@unknown.test")


def p_other_local(o):
    # a served domain, but not the pair this stream authenticated
    return msg(o, to="fedgate." + o.to)


def p_no_from(o):
    return ("<message to='alice@%s'><body>x</body></message>" % o.to).encode()


def p_bad_jid(o):
    return msg(o, frm="mallory@evil..test")


def p_auth_again(o):
    return (b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")


def p_starttls_again(o):
    return b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


def p_db_result_unknown(o):
    return ("<db:result from='%s' to='unknown.test'>abcdef</db:result>" %
            (o.frm or "evil.test")).encode()


def p_db_result_nokey(o):
    return ("<db:result from='%s' to='%s'/>" % (o.frm or "evil.test", o.to)).encode()


def p_log_inject(o):
    # a stream error whose text tries to forge a log line
    return (b"<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bye\n"
            b"2000-01-01T00:00:00.000Z error FORGED-LOG-LINE\r\nx</text></stream:error>")


def p_starttls_inject(o):
    # STARTTLS command injection (CVE-2011-0411 class): plaintext behind
    # <starttls/> in the same write must be dropped, not parsed after TLS
    return (b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" +
            msg(o, frm="mallory@b.test"))


def p_clean_close(o):
    return b"</stream:stream>"


# name: (function, expected condition for any stage, or None)
PAYLOADS = {
    "doctype": (p_doctype, "restricted-xml"),
    "billion-laughs": (p_billion_laughs, "restricted-xml"),
    "xxe": (p_xxe, "restricted-xml"),
    "xxe-param": (p_xxe_param, "restricted-xml"),
    "xxe-public": (p_xxe_public, "restricted-xml"),
    "entity-in-header": (p_entity_in_header, "restricted-xml"),
    "entity-ref": (p_entity_ref, "restricted-xml"),
    "entity-inline-dtd": (p_entity_inline_dtd, "not-well-formed"),
    "comment": (p_comment, "restricted-xml"),
    "pi": (p_pi, "restricted-xml"),
    "cdata": (p_cdata_ok_then_close, None),
    "deep": (p_deep, "policy-violation"),
    "deep-ok": (p_deep_ok, "none"),
    "huge-attr-value": (p_huge_attr_value, "policy-violation"),
    "huge-attr-name": (p_huge_attr_name, "policy-violation"),
    "huge-name": (p_huge_name, "policy-violation"),
    "huge-header-attr": (p_huge_header_attr, "policy-violation"),
    "many-attrs": (p_many_attrs, None),
    "dup-attrs": (p_dup_attrs, "not-well-formed"),
    "many-ns": (p_many_ns, None),
    "oversize": (p_oversize, "policy-violation"),
    "bigok": (p_bigok, "none"),
    "flood": (p_flood, "none"),
    "bad-utf8-text": (p_bad_utf8_text, "unsupported-encoding"),
    "bad-utf8-attr": (p_bad_utf8_attr, "unsupported-encoding"),
    "bad-utf8-name": (p_bad_utf8_name, "unsupported-encoding"),
    "bad-utf8-overlong": (p_bad_utf8_overlong, "unsupported-encoding"),
    "bad-utf8-surrogate": (p_bad_utf8_surrogate, "unsupported-encoding"),
    "bad-utf8-truncated": (p_bad_utf8_truncated, "unsupported-encoding"),
    "bad-utf8-header": (p_bad_utf8_header, "unsupported-encoding"),
    "utf16": (p_utf16, "unsupported-encoding"),
    "utf16-nobom": (p_utf16_nobom, "unsupported-encoding"),
    "latin1-decl": (p_latin1_decl, "unsupported-encoding"),
    "ctrl-char": (p_ctrl_char, "not-well-formed"),
    "nul": (p_nul, "not-well-formed"),
    "not-xml": (p_not_xml, "not-well-formed"),
    "tls-garbage": (p_tls_garbage, "not-well-formed"),
    "stanza-preauth": (p_stanza_preauth, "not-authorized"),
    "iq-preauth": (p_iq_preauth, "not-authorized"),
    "unknown-element": (p_unknown_element, None),
    "unknown-to": (p_unknown_to, "host-unknown"),
    "no-to": (p_no_to, "improper-addressing"),
    "bad-to": (p_bad_to, "improper-addressing"),
    "bad-ns": (p_bad_ns, "invalid-namespace"),
    "bad-root": (p_bad_root, "invalid-namespace"),
    "bad-version": (p_bad_version, "unsupported-version"),
    "second-header": (p_second_header, None),
    "spoofed-from": (p_spoofed_from, "invalid-from"),
    "spoofed-from-bare": (p_spoofed_from_bare, "invalid-from"),
    "unknown-to-stanza": (p_unknown_to_stanza, "host-unknown"),
    "other-local": (p_other_local, "host-unknown"),
    "no-from": (p_no_from, "improper-addressing"),
    "bad-jid": (p_bad_jid, "improper-addressing"),
    "auth-again": (p_auth_again, "policy-violation"),
    "starttls-again": (p_starttls_again, None),
    "db-result-unknown": (p_db_result_unknown, None),
    "db-result-nokey": (p_db_result_nokey, "bad-format"),
    "log-inject": (p_log_inject, "none"),
    "starttls-inject": (p_starttls_inject, None),
    "clean-close": (p_clean_close, "none"),
}


# ---- one connection ----------------------------------------------------------

class Conn:
    """A blocking connection that can switch to TLS in the middle."""

    def __init__(self, o, direct=False, client_cert=False):
        self.o = o
        self.buf = b""
        port = o.tls_port if direct else o.port
        self.raw = socket.create_connection((o.host, port), timeout=o.connect_timeout,
                                            source_address=(o.bind, 0) if o.bind else None)
        self.sock = self.raw
        self.port = self.raw.getsockname()[1]  # names us in fedgate's log
        if direct:
            self.start_tls(client_cert, alpn=True)

    def tls_context(self, client_cert):
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.o.cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if client_cert:
            if not self.o.cert:
                raise SetupError("--cert and --key are needed for this stage")
            ctx.load_cert_chain(self.o.cert, self.o.key)
        return ctx

    def start_tls(self, client_cert, alpn=False):
        ctx = self.tls_context(client_cert)
        if alpn:
            ctx.set_alpn_protocols(["xmpp-server"])
        try:
            self.sock = ctx.wrap_socket(self.raw, server_hostname=self.o.to)
        except (ssl.SSLError, OSError) as e:
            raise SetupError("TLS handshake failed: %s" % e)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_until(self, pattern, timeout):
        """Reads until pattern (bytes regex) matches; returns the match."""
        end = time.monotonic() + timeout
        rx = re.compile(pattern, re.S)
        while True:
            m = rx.search(self.buf)
            if m:
                return m
            if ERR_RE.search(self.buf):
                raise SetupError("stream error during set-up: %s" % describe(self.buf))
            left = end - time.monotonic()
            if left <= 0:
                raise SetupError("timed out waiting for %r; got %r" % (pattern, self.buf[-300:]))
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not d:
                raise SetupError("connection closed during set-up; got %r" % self.buf[-300:])
            self.buf += d

    def features(self):
        m = self.read_until(rb"<stream:features\s*/>|<stream:features>.*?</stream:features>",
                            self.o.wait)
        f = m.group(0)
        self.buf = self.buf[m.end():]
        return f

    def open_stream(self, frm=None):
        self.send(header(self.o.to, frm if frm is not None else self.o.frm))
        return self.features()

    def starttls(self, client_cert=False):
        f = self.open_stream()
        if b"starttls" not in f:
            raise SetupError("STARTTLS not offered: %r" % f)
        self.send(("<starttls xmlns='%s'/>" % NS_TLS).encode())
        self.read_until(rb"<proceed\s", self.o.wait)
        self.start_tls(client_cert)

    def sasl_external(self):
        f = self.open_stream()
        if b"EXTERNAL" not in f:
            raise SetupError("SASL EXTERNAL not offered (certificate for %s not accepted?): %r"
                             % (self.o.frm, f))
        authzid = base64.b64encode(self.o.frm.encode()).decode()
        self.send(("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>" % (NS_SASL, authzid)).encode())
        m = self.read_until(rb"<success\s[^>]*/>|<failure\s.*?</failure>", self.o.wait)
        if not m.group(0).startswith(b"<success"):
            raise SetupError("SASL EXTERNAL failed: %r" % m.group(0))
        self.buf = self.buf[m.end():]
        self.open_stream()

    def drain(self, wait):
        """Reads until EOF or wait seconds; returns (closed, bytes)."""
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False, self.buf
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                return True, self.buf
            if not d:
                return True, self.buf
            self.buf += d

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def describe(data):
    m = ERR_RE.search(data)
    return m.group(1).decode() if m else "none"


def error_text(data):
    m = TEXT_RE.search(data)
    if not m:
        return ""
    return m.group(1).decode("utf-8", "replace").replace("\n", "\\n")[:160]


def setup(o, stage):
    """Connects and runs the stage; returns the connection."""
    if stage == "raw":
        return Conn(o)
    if stage == "header":
        c = Conn(o)
        c.open_stream()
        return c
    if stage in ("tls", "tlsraw"):
        c = Conn(o)
        c.starttls()
        if stage == "tls":
            c.open_stream()
        return c
    if stage == "direct":
        c = Conn(o, direct=True)
        c.open_stream()
        return c
    if stage == "directraw":
        return Conn(o, direct=True)
    if stage == "sasl":
        c = Conn(o)
        c.starttls(client_cert=True)
        c.sasl_external()
        return c
    raise SetupError("unknown stage %s" % stage)


def send_all(c, data, wait):
    """Writes data; a peer that closes mid-write is an outcome, not an
    error (fedgate stops reading at a limit). Returns the bytes sent."""
    sent = 0
    c.sock.settimeout(wait)
    try:
        while sent < len(data):
            n = c.sock.send(data[sent:sent + 65536])
            sent += n
    except (BrokenPipeError, ConnectionResetError, socket.timeout, ssl.SSLError, OSError):
        pass
    return sent


def run_case(o, case, expect):
    stage, _, name = case.partition(":")
    if name not in PAYLOADS:
        print("unknown payload %s (see --list)" % name, file=sys.stderr)
        return 3
    fn, own = PAYLOADS[name]
    want = expect or own
    try:
        c = setup(o, stage)
    except (SetupError, OSError) as e:
        print("result %s setup-failed: %s" % (case, e))
        return 2
    port = c.port
    data = fn(o)
    t0 = time.monotonic()
    if name == "starttls-inject":
        # the injected plaintext must be gone once TLS is up: finish the
        # TLS handshake, open the new stream and end it cleanly
        try:
            c.send(data)
            c.read_until(rb"<proceed\s", o.wait)
            c.start_tls(False)
            c.open_stream()
            data = b"</stream:stream>"
        except (SetupError, OSError) as e:
            print("result %s port=%d setup-failed after the injection: %s" % (case, port, e))
            return 1
    sent = send_all(c, data, o.wait)
    closed, got = c.drain(o.wait)
    ms = int((time.monotonic() - t0) * 1000)
    c.close()
    cond = describe(got) if closed or ERR_RE.search(got) else "open"
    if cond == "none" and not closed:
        cond = "open"
    print('result %s port=%d condition=%s closed=%d ms=%d sent=%d/%d text="%s"'
          % (case, port, cond, int(closed), ms, sent, len(data), error_text(got)))
    if o.verbose:
        print("  received: %r" % got[-600:])
    rc = 0
    if want is not None and cond != want:
        print("  expected condition=%s" % want)
        rc = 1
    if o.check_alive and not alive(o):
        return 4
    return rc


def alive(o):
    """fedgate still answers a new stream with its header and features."""
    try:
        c = Conn(o)
        c.open_stream()
        c.close()
        return True
    except (SetupError, OSError) as e:
        print("  fedgate does not answer a new stream: %s" % e)
        return False


# ---- slowloris ---------------------------------------------------------------

def client_hello_bytes(o, alpn):
    """The first flight of a TLS client, for trickling by hand."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=o.cafile)
    if alpn:
        ctx.set_alpn_protocols(["xmpp-server"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=o.to)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def slowloris(o):
    """One byte every --interval seconds until fedgate closes the
    connection. Stages: header (the stream header itself), ws (a full
    header, then whitespace forever, never authenticating), tls (the TLS
    ClientHello on the direct TLS port), starttls (the ClientHello after
    <proceed/>). Prints
      slowloris stage=S closed=1 condition=C after_ms=N bytes=N
    and exits 0 when fedgate closed it before we ran out of bytes (with
    --expect: with that condition)."""
    stage = o.stage
    if stage == "tls":
        c = Conn.__new__(Conn)
        c.o, c.buf = o, b""
        c.raw = c.sock = socket.create_connection(
            (o.host, o.tls_port), timeout=5, source_address=(o.bind, 0) if o.bind else None)
        data = client_hello_bytes(o, True)
    elif stage == "starttls":
        c = Conn(o)
        f = c.open_stream()
        if b"starttls" not in f:
            raise SetupError("STARTTLS not offered")
        c.send(("<starttls xmlns='%s'/>" % NS_TLS).encode())
        c.read_until(rb"<proceed\s[^>]*>", o.wait)
        c.buf = b""
        data = client_hello_bytes(o, False)
    else:
        c = Conn(o)
        data = header(o.to, o.frm)
        if stage == "ws":
            c.send(data)
            c.features()
            data = b" " * 100000
    t0 = time.monotonic()
    n = 0
    closed = False
    c.sock.setblocking(False)
    for b in data:
        try:
            c.sock.send(bytes([b]))
        except (BlockingIOError, ssl.SSLWantWriteError):
            pass
        except OSError:
            closed = True
            break
        n += 1
        end = time.monotonic() + o.interval
        while time.monotonic() < end:
            try:
                d = c.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                time.sleep(min(0.05, max(0, end - time.monotonic())))
                continue
            except OSError:
                closed = True
                break
            if not d:
                closed = True
                break
            c.buf += d
        if closed:
            break
        if time.monotonic() - t0 > o.max_time:
            break
    ms = int((time.monotonic() - t0) * 1000)
    cond = describe(c.buf) if closed else "open"
    print('slowloris stage=%s closed=%d condition=%s after_ms=%d bytes=%d/%d text="%s"'
          % (stage, int(closed), cond, ms, n, len(data), error_text(c.buf)))
    c.close()
    if not closed:
        return 1
    if o.expect and cond != o.expect[0]:
        print("  expected condition=%s" % o.expect[0])
        return 1
    return 0


# ---- half-open connections ------------------------------------------------------

def source_addresses(o):
    if not o.bind_range:
        return [o.bind]
    lo, hi = o.bind_range.split("-")
    a, b = lo.rsplit(".", 1), hi.rsplit(".", 1)
    return ["%s.%d" % (a[0], i) for i in range(int(a[1]), int(b[1]) + 1)]


def stop_requested(o, t0):
    if o.until_file:
        return os.path.exists(o.until_file) or time.monotonic() - t0 > o.max_time
    return time.monotonic() - t0 >= o.hold


async def halfopen_worker(o, i, src, stats):
    """One slot: with --until-file, a connection fedgate closes is opened
    again at once, so the slots stay taken until the file appears."""
    t0 = time.monotonic()
    while True:
        await halfopen_one(o, i, src, stats, t0)
        if not o.until_file or stop_requested(o, t0):
            return
        stats["reopened"] += 1


async def halfopen_one(o, i, src, stats, t_start):
    full = i < o.full_header
    if full:
        partial = header(o.to, o.frm)  # a whole header, then nothing
    else:
        partial = header(o.to, o.frm)[: 40 + i % 60]  # never a whole header
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(o.host, o.port, local_addr=(src, 0) if src else None),
            o.connect_timeout)
    except (OSError, asyncio.TimeoutError) as e:
        stats["connect_failed"] += 1
        stats["last_error"] = str(e)
        return
    stats["connected"] += 1
    stats["open"] += 1
    stats["peak_open"] = max(stats["peak_open"], stats["open"])
    got = b""
    counted_ready = False
    t0 = time.monotonic()
    try:
        w.write(partial)
        await w.drain()
        while True:
            if stop_requested(o, t_start):
                raise asyncio.TimeoutError
            try:
                d = await asyncio.wait_for(r.read(65536), 0.2)
            except asyncio.TimeoutError:
                continue
            if not d:
                break
            got += d
            if full and b"<stream:features" in got and not counted_ready:
                counted_ready = True  # fedgate has taken the header
                stats["full_ready"] += 1
    except asyncio.TimeoutError:
        stats["held"] += 1  # still open when we let go
        if full:
            stats["full_held"] += 1
    except OSError:
        # A reset after fedgate's last bytes (ours arrived after its close)
        # makes StreamReader raise before handing out what it buffered:
        # look there for the stream error.
        got += bytes(getattr(r, "_buffer", b""))
        if ERR_RE.search(got):
            stats["reset_after_error"] = stats.get("reset_after_error", 0) + 1
            cond = describe(got)
            stats["closed_by_server"] += 1
            key = ("full_cond_" if full else "cond_") + cond
            stats[key] = stats.get(key, 0) + 1
        else:
            stats["reset"] += 1
    else:
        cond = describe(got)
        stats["closed_by_server"] += 1
        key = ("full_cond_" if full else "cond_") + cond
        stats[key] = stats.get(key, 0) + 1
        stats["closed_ms_max"] = max(stats["closed_ms_max"], int((time.monotonic() - t0) * 1000))
    stats["open"] -= 1
    w.close()
    try:
        await w.wait_closed()
    except OSError:
        pass


async def halfopen_main(o):
    stats = {"connected": 0, "connect_failed": 0, "open": 0, "peak_open": 0, "held": 0,
             "reset": 0, "closed_by_server": 0, "closed_ms_max": 0, "reopened": 0,
             "full_held": 0, "full_ready": 0, "last_error": ""}
    srcs = source_addresses(o)
    t_main = time.monotonic()
    tasks = []
    for i in range(o.count):
        tasks.append(asyncio.create_task(halfopen_worker(o, i, srcs[i % len(srcs)], stats)))
        if i + 1 == o.full_header:
            # the whole headers answered (fedgate has parsed them) before
            # the rest come
            while (stats["full_ready"] + stats["connect_failed"] < o.full_header
                   and time.monotonic() - t_main < o.max_time):
                await asyncio.sleep(0.01)
        elif i % 100 == 99:
            await asyncio.sleep(0.01)  # let the listener keep up
    # every slot tried once: tell the test script
    while stats["connected"] + stats["connect_failed"] < o.count:
        await asyncio.sleep(0.05)
    stats["open_after_start"] = stats["open"]
    if o.signal:
        with open(o.signal, "w") as f:
            f.write("%d\n" % stats["open"])
    await asyncio.gather(*tasks)
    return stats


def halfopen(o):
    """--count connections (from --bind-range source addresses in turn),
    each writes part of a stream header and waits up to --hold seconds,
    or, with --until-file, until that file exists, opening a connection
    again whenever fedgate closes one (a sustained attack). --signal FILE
    is written once every slot has connected (or failed to). Prints
    counts: connected, connect_failed, peak_open (simultaneously open),
    open_after_start, held (open when we let go), closed_by_server (with
    cond_X per condition, closed_ms_max the latest), reopened, reset. With
    --full-header N the first N connections write a whole stream header
    (then nothing); their outcomes are counted apart (full_held,
    full_cond_X)."""
    stats = asyncio.run(halfopen_main(o))
    print("halfopen " + " ".join("%s=%s" % (k, v) for k, v in sorted(stats.items())
                                 if k != "last_error"))
    if stats["last_error"]:
        print("halfopen last_error=%s" % stats["last_error"])
    return 0


# ---- reconnect storm -----------------------------------------------------------------

STORM_KINDS = ("close", "rst", "header", "features", "starttls-abort", "direct-abort")


def storm_one(o, kind, hello_direct, hello_plain):
    src = (o.bind, 0) if o.bind else None
    if kind == "direct-abort":
        s = socket.create_connection((o.host, o.tls_port), timeout=o.connect_timeout,
                                     source_address=src)
        s.sendall(hello_direct[: len(hello_direct) // 2])
        s.close()
        return
    s = socket.create_connection((o.host, o.port), timeout=o.connect_timeout,
                                 source_address=src)
    if kind == "rst":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    elif kind == "header":
        s.sendall(header(o.to, o.frm))
    elif kind in ("features", "starttls-abort"):
        s.sendall(header(o.to, o.frm))
        buf = b""
        s.settimeout(o.wait)
        while b"</stream:features>" not in buf:
            d = s.recv(65536)
            if not d:
                raise SetupError("closed before features")
            buf += d
        if kind == "starttls-abort":
            s.sendall(("<starttls xmlns='%s'/>" % NS_TLS).encode())
            while b"<proceed" not in buf:
                d = s.recv(65536)
                if not d:
                    raise SetupError("closed before proceed")
                buf += d
            s.sendall(hello_plain[: len(hello_plain) // 2])
    s.close()


async def storm_main(o):
    hello_direct = client_hello_bytes(o, True)
    hello_plain = client_hello_bytes(o, False)
    stats = {"cycles": 0, "failed": 0}
    sem = asyncio.Semaphore(o.concurrency)
    loop = asyncio.get_running_loop()

    async def one(i):
        kind = STORM_KINDS[i % len(STORM_KINDS)]
        async with sem:
            try:
                await loop.run_in_executor(None, storm_one, o, kind, hello_direct, hello_plain)
                stats["cycles"] += 1
                stats[kind] = stats.get(kind, 0) + 1
            except (OSError, SetupError) as e:
                stats["failed"] += 1
                stats["last_error"] = "%s: %s" % (kind, e)
    await asyncio.gather(*(one(i) for i in range(o.count)))
    return stats


def storm(o):
    """--count connect/disconnect cycles, --concurrency at a time, cycling
    through: close at once, RST, header then close, features then close,
    STARTTLS then half a ClientHello, half a direct-TLS ClientHello.
    Prints storm cycles=N failed=N per-kind counts; exit 0 when none
    failed (every connection was accepted and served)."""
    t0 = time.monotonic()
    stats = asyncio.run(storm_main(o))
    stats["ms"] = int((time.monotonic() - t0) * 1000)
    print("storm " + " ".join("%s=%s" % (k, v) for k, v in sorted(stats.items())
                              if k != "last_error"))
    if "last_error" in stats:
        print("storm last_error=%s" % stats["last_error"])
    return 0 if stats["failed"] == 0 else 1


# ---- main ---------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", required=False)
    ap.add_argument("--port", type=int, default=5269)
    ap.add_argument("--tls-port", type=int, default=5270)
    ap.add_argument("--cafile")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--from", dest="frm", default="evil.test")
    ap.add_argument("--to", default="a.test")
    ap.add_argument("--bind")
    ap.add_argument("--bind-range")
    ap.add_argument("--wait", type=float, default=5.0)
    ap.add_argument("--connect-timeout", type=float, default=5.0)
    ap.add_argument("--expect", action="append", default=[])
    ap.add_argument("--n", type=int, default=0, help="size parameter of a payload")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--stage", default="header")
    ap.add_argument("--max-time", type=float, default=120.0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--hold", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--signal", help="file written once every half-open connection is up")
    ap.add_argument("--until-file", help="halfopen: hold (and reopen) until this file exists")
    ap.add_argument("--full-header", type=int, default=0,
                    help="halfopen: the first N connections send a whole header")
    ap.add_argument("--check-alive", action="store_true",
                    help="after each case, open a stream to check fedgate answers (exit 4 if not)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("cases", nargs="*")
    o = ap.parse_args()
    if o.list:
        for k, (_, want) in PAYLOADS.items():
            print("%-20s %s" % (k, want or "-"))
        return 0
    if not o.host or not o.cases:
        ap.print_usage(sys.stderr)
        return 3
    mode = o.cases[0]
    modes = {"slowloris": slowloris, "halfopen": halfopen, "storm": storm}
    if mode in modes:
        try:
            return modes[mode](o)
        except (SetupError, OSError) as e:
            print("%s setup-failed: %s" % (mode, e))
            return 2
    if len(o.expect) > 1 and len(o.expect) != len(o.cases):
        print("give one --expect, or one per case", file=sys.stderr)
        return 3
    rc = 0
    for i, case in enumerate(o.cases):
        want = o.expect[i] if len(o.expect) > 1 else (o.expect[0] if o.expect else None)
        r = run_case(o, case, want)
        if r in (2, 3, 4):
            return r
        rc = rc or r
    return rc


if __name__ == "__main__":
    sys.exit(main())
