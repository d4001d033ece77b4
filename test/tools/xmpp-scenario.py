#!/usr/bin/python3
# -*- coding: utf-8 -*-
"""xmpp-scenario.py: a scripted multi-user XMPP client for end-to-end IM tests.

Run with Debian's interpreter (it has python3-slixmpp):

  /usr/bin/python3 test/tools/xmpp-scenario.py --cafile CA.crt \\
      --account alice@a.test:PW@127.0.20.1:5222 \\
      --account bob@b.test:PW@127.0.21.1 \\
      [--timeout 30] [--transcript] STEP...

Every account logs in at start (STARTTLS required, certificate verified
against --cafile for the JID's domain; no plaintext fallback), fetches its
roster and sends initial presence; then the steps run in order. One line
per step on stdout:

  ok STEP (12 ms)[: detail]
  FAIL STEP: what was expected; what arrived

ACCOUNTS
  --account [NAME=]JID[/RESOURCE]:PASSWORD@HOST[:PORT]
      NAME (default: the JID's local part) is the actor name used in steps;
      RESOURCE defaults to --resource ("scenario"); PORT to 5222. The
      password may contain ':' and '@' (the last '@' starts HOST).
  In steps, a JID argument may be an actor NAME (its bare JID) or NAME/
  (its full JID, e.g. for groupchat/error messages and iq to a client).

STEP SYNTAX
  ACTOR:VERB[:ARG...][:OPTION...]   fields separated by ':'.
  Escapes inside a field: \\: (colon)  \\\\ (backslash)  \\n (newline)
  \\uXXXX and \\UXXXXXXXX (any code point)  \\@ (a literal leading @).
  TEXT: literal text; "" (empty) = no <body>; "*" (expect only) = any
  body; "@N" or "@Nk" = a generated ASCII body of exactly N (N*1024)
  characters with position markers (the same on both sides, compared in
  full; shown as length and sha1).
  OPTIONs are key=value (or a bare flag) after the positional arguments;
  every waiting step accepts timeout=SECONDS (default --timeout).

  Session
    connect[:retry][:nopresence]   log in again (new session); retry: keep
                                   trying until the timeout (server restarting)
    disconnect                     unavailable presence, clean stream close
    kill                           drop the TCP connection (no </stream>)
    await-disconnect               the server must close our session
    presence[:show=S][:status=T][:priority=N][:unavailable]
  Subscriptions (RFC 6121 §3)
    subscribe:JID  subscribed:JID (alias approve)  unsubscribe:JID
    unsubscribed:JID (aliases cancel, deny)
    expect-presence:JID:TYPE[:show=S][:status=T]
        TYPE: available unavailable subscribe subscribed unsubscribe
        unsubscribed error. Takes the first matching presence from JID
        (bare JID: any resource) received so far or within the timeout,
        and drops older ones from that sender. The presence inbox is
        emptied at each (re)connect (presence is per session); use forget
        where an older presence of the same type could match.
    expect-subscribe:JID expect-subscribed:JID expect-unsubscribe:JID
    expect-unsubscribed:JID           (shorthands)
    forget[:JID]                    empty the presence inbox (of JID only),
                                    so older presences cannot match
    expect-roster:JID:SUB[:ask]     SUB: none to from both absent; with
        "ask", ask='subscribe' must be set, without it must be unset
        (polls the roster until it matches or the timeout)
  Messages
    send:JID:TYPE:TEXT[:thread=T][:state=S][:receipt][:id=ID][:cond=C]
        TYPE: normal (no type attribute) chat headline groupchat error
        (an error message carries <error type='cancel'><C/></error>,
        default C undefined-condition); state: active composing paused
        inactive gone (XEP-0085); receipt: XEP-0184 request.
    expect-message:JID:TYPE:TEXT[:thread=T][:state=S][:receipt][:delayed][:cond=C]
        The OLDEST unconsumed message from JID must match exactly: type,
        body, thread, chat state, receipt request, XEP-0203 <delay/>
        (offline storage) and, for type error, the condition; an option
        left out means "must be absent". With receipt, the receipt
        (<received/>) is sent back at once.
    expect-receipt:JID[:id=ID]      a <received/> for the last message sent
                                    to JID (or for ID)
    expect-bounce:JID:COND[:type=T][:text=X]
                                    the last message sent to JID came back
                                    as an error with that condition
    expect-no-message:JID:SECONDS   nothing from JID during SECONDS
  IQ (replies are checked; errors show condition, type and text)
    iq-ping:JID   iq-version:JID[:name=N]   iq-disco:JID[:feature=F]
    iq-vcard:JID[:fn=FN]            vcard-temp get
    vcard-set:FN                    store our own vCard (FN)
    iq-expect-error:COND:KIND:JID[:type=T][:text=X]
                                    KIND: ping version disco vcard
    (Each client answers ping, version and disco#info itself; anything
    else gets feature-not-implemented.)
  Counting mode (fault tests)
    flood:JID:N:TYPE[:size=CHARS][:interval=MS]
        sends N numbered messages (ids RUN-ACTOR-fSTEP-I, bodies
        "flood I/N ...") without waiting
    collect:JID:SECONDS[:delivered=N][:bounced=N]
        waits (at most SECONDS) until every flood message between this
        actor and JID (both directions) is delivered (seen by a local
        recipient, deduplicated by id) or bounced (an error reply with its
        id); fails if any stays unaccounted for, or the counts differ from
        the given ones
  Global steps (pseudo-actor "@"; not "-", which argparse takes for an option)
    @:sleep:SECONDS   @:note:TEXT (printed, for transcripts)
    @:signal:FILE     create FILE (tell a test script we got here)
    @:wait-file:FILE[:timeout=S]   wait until FILE exists (the test script
                      restarts a server meanwhile, then creates FILE)

REPORT (when any flood step ran), one line per flooding actor, then totals:
  report alice sent=100 delivered=100 bounced=0 unaccounted=0 duplicates=0 conditions=-
  report total sent=... delivered=... bounced=... unaccounted=...
  Delivered = seen by a recipient account of this run; bounced = an error
  reply carrying the message's id (conditions counted); duplicates = extra
  copies delivered. A message both delivered and bounced counts in both
  (shown as both=K). With flood steps, the run passes only if
  unaccounted == 0; --expect-delivered N / --expect-bounced N add exact
  checks on the totals. Messages still in flight at the end get up to
  --settle seconds.

OPTIONS
  --cafile FILE (required)   --timeout S (per step, default 30)
  --resource R               --transcript (print each message/presence/iq
  --keep-going (run all steps after a failure)   sent or received, one
  --max-time S (whole run, default 600)          compact line each)
  --expect-delivered N  --expect-bounced N  --settle S (default 5)
  --debug (slixmpp debug log on stderr)

EXIT STATUS
  0 every step passed (and, with floods, nothing unaccounted and the
  expected counts); 1 a step or the report failed; 2 connect/auth/TLS
  failure (at start or in a connect step); 3 usage error.

SERVER FACTS seen with Prosody 0.12 (useful when writing expectations)
  - a ping to any bare JID of the host is answered by the server, even
    for an account that does not exist; version/disco to such a JID give
    service-unavailable, vcard-temp gives item-not-found (also for an
    existing account without a vCard);
  - groupchat to a bare JID bounces with service-unavailable; to a full
    JID it is delivered; an error message to a full JID is delivered;
  - offline storage keeps normal and chat (with <delay/>), not headline;
  - "unsubscribe" sends the unsubscriber no unavailable presence of the
    contact; "unsubscribed" (cancel) sends the contact unavailable presence;
  - a component that is not connected: remote-server-timeout (type wait,
    text "Component unavailable").

DESIGN NOTES
  All state lives in one Scenario object; every wait is bounded by a step
  timeout and the whole run by --max-time. Each session is a fresh
  slixmpp client; received stanzas go to per-actor inboxes that survive
  reconnects (except presence). Subscription requests are never answered
  automatically (slixmpp's auto_authorize is off), receipts only by
  expect-message. slixmpp quirks handled here: its force_starttls flag
  is not enforced (we refuse SASL on a stream without TLS ourselves), and
  with an IP address as host it would do TLS without a server name, so
  we connect to HOST but verify the certificate for the JID's domain.
"""

import argparse
import asyncio
import copy
import hashlib
import logging
import os
import re
import secrets
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

# Before importing slixmpp: it warns about its pure-Python stringprep at
# import time; only errors go to stderr unless --debug.
logging.basicConfig(level=logging.ERROR,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")

try:
    import slixmpp
    from slixmpp.exceptions import IqError, IqTimeout
    from slixmpp.jid import JID, InvalidJID
    from slixmpp.xmlstream import tostring
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write("xmpp-scenario: cannot import slixmpp (%s); run it with "
                     "/usr/bin/python3 (Debian's python3-slixmpp)\n" % exc)
    sys.exit(3)

EXIT_OK, EXIT_FAIL, EXIT_CONNECT, EXIT_USAGE = 0, 1, 2, 3

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_DELAY = "urn:xmpp:delay"
NS_PING = "urn:xmpp:ping"
NS_VERSION = "jabber:iq:version"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_VCARD = "vcard-temp"
NS_ROSTER = "jabber:iq:roster"

MSG_TYPES = ("normal", "chat", "headline", "groupchat", "error")
CHAT_STATES = ("active", "composing", "paused", "inactive", "gone")
PRES_TYPES = ("available", "unavailable", "subscribe", "subscribed",
              "unsubscribe", "unsubscribed", "error")
ROSTER_SUBS = ("none", "to", "from", "both", "absent")
IQ_KINDS = {"ping": (NS_PING, "ping"), "version": (NS_VERSION, "query"),
            "disco": (NS_DISCO_INFO, "query"), "vcard": (NS_VCARD, "vCard")}

log = logging.getLogger("xmpp-scenario")


class Usage(Exception):
    """Bad command line: exit 3."""


class StepFailed(Exception):
    """A step's expectation was not met: exit 1."""


class ConnectFailed(Exception):
    """Could not connect, negotiate TLS or authenticate: exit 2."""


# ---- small helpers ----------------------------------------------------------

def split_fields(step):
    """Splits a step on unescaped ':' (escapes are kept for unescape())."""
    fields, cur, i = [], [], 0
    while i < len(step):
        c = step[i]
        if c == "\\" and i + 1 < len(step):
            cur.append(step[i:i + 2])
            i += 2
            continue
        if c == ":":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    fields.append("".join(cur))
    return fields


def unescape(field):
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c != "\\" or i + 1 >= len(field):
            out.append(c)
            i += 1
            continue
        n = field[i + 1]
        if n in ":\\@":
            out.append(n)
            i += 2
        elif n == "n":
            out.append("\n")
            i += 2
        elif n in "uU":
            width = 4 if n == "u" else 8
            hexd = field[i + 2:i + 2 + width]
            if len(hexd) != width or not re.fullmatch(r"[0-9A-Fa-f]+", hexd):
                raise Usage("bad escape \\%s%s in %r" % (n, hexd, field))
            out.append(chr(int(hexd, 16)))
            i += 2 + width
        else:
            raise Usage("unknown escape \\%s in %r" % (n, field))
    text = "".join(out)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Usage("argument %r is not valid UTF-8 (check the locale)" % field)
    return text


def generated_body(n):
    """A deterministic ASCII body of exactly n characters with markers."""
    parts, size, i = [], 0, 0
    while size < n:
        block = "[%07d]abcdefghijklmnopqrstuvwxyz0123456789\n" % i
        parts.append(block)
        size += len(block)
        i += 1
    return "".join(parts)[:n]


def parse_text(raw, allow_any):
    """TEXT field -> str, None (no body) or ANY."""
    if raw == "":
        return None
    if raw == "*" and allow_any:
        return ANY
    m = re.fullmatch(r"@(\d+)(k?)", raw)
    if m:
        return generated_body(int(m.group(1)) * (1024 if m.group(2) else 1))
    return unescape(raw)


class _Any:
    def __repr__(self):
        return "*"


ANY = _Any()


def show_text(text, limit=60):
    """Readable summary of a body for step lines (invisible chars escaped)."""
    if text is None:
        return "(no body)"
    if text is ANY:
        return "(any body)"
    if len(text) > limit:
        return "%d chars sha1 %s" % (
            len(text), hashlib.sha1(text.encode("utf-8")).hexdigest()[:12])
    return ascii(text) if any(ord(c) > 126 or ord(c) < 32 for c in text) \
        else repr(text)


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def parse_jid(text):
    try:
        return JID(text)
    except InvalidJID as exc:
        raise Usage("invalid JID %r: %s" % (text, exc))


def jid_matches(frm, want):
    """want without resource matches any resource of that bare JID."""
    if want.resource:
        return frm.full == want.full
    return frm.bare == want.bare


def child(elem, ns, name):
    return elem.find("{%s}%s" % (ns, name))


def error_info(elem):
    """(condition, type, text) of the <error/> child of a stanza."""
    err = child(elem, NS_CLIENT, "error")
    if err is None:
        return (None, None, None)
    cond, text = None, None
    for c in err:
        if c.tag.startswith("{%s}" % NS_STANZAS):
            local = c.tag.split("}", 1)[1]
            if local == "text":
                text = c.text or ""
            elif cond is None:
                cond = local
    return (cond, err.get("type"), text)


def render(xml, limit=400):
    """One compact line for the transcript (long texts shortened)."""
    x = copy.deepcopy(xml)
    for e in x.iter():
        if e.text and len(e.text) > 80:
            e.text = "%s...[%d chars]" % (e.text[:40], len(e.text))
    line = tostring(x, xmlns=NS_CLIENT).replace("\n", "\\n")
    return line if len(line) <= limit else line[:limit] + "..."


class Message:
    """The parts of a received <message/> the checks look at."""

    def __init__(self, stanza):
        x = stanza.xml
        self.frm = JID(x.get("from") or "")
        self.id = x.get("id") or ""
        self.type = x.get("type") or "normal"
        b = child(x, NS_CLIENT, "body")
        self.body = None if b is None else (b.text or "")
        t = child(x, NS_CLIENT, "thread")
        self.thread = None if t is None else (t.text or "")
        self.state = None
        for s in CHAT_STATES:
            if child(x, NS_CHATSTATES, s) is not None:
                self.state = s
        self.receipt_request = child(x, NS_RECEIPTS, "request") is not None
        r = child(x, NS_RECEIPTS, "received")
        self.receipt_for = None if r is None else (r.get("id") or "")
        self.delayed = child(x, NS_DELAY, "delay") is not None
        self.cond, self.err_type, self.err_text = error_info(x)

    def describe(self):
        d = "%s from %s id=%s %s" % (self.type, self.frm, self.id,
                                     show_text(self.body))
        for k in ("thread", "state"):
            if getattr(self, k) is not None:
                d += " %s=%s" % (k, getattr(self, k))
        if self.receipt_request:
            d += " receipt"
        if self.delayed:
            d += " delayed"
        if self.cond:
            d += " cond=%s" % self.cond
        return d


class Presence:
    def __init__(self, stanza):
        x = stanza.xml
        self.frm = JID(x.get("from") or "")
        self.type = x.get("type") or "available"
        s = child(x, NS_CLIENT, "show")
        self.show = None if s is None else (s.text or "")
        s = child(x, NS_CLIENT, "status")
        self.status = None if s is None else (s.text or "")
        self.cond = error_info(x)[0]

    def describe(self):
        d = "%s from %s" % (self.type, self.frm)
        if self.show:
            d += " show=%s" % self.show
        if self.status is not None:
            d += " status=%r" % self.status
        if self.cond:
            d += " cond=%s" % self.cond
        return d


class FloodRecord:
    __slots__ = ("sender", "to", "delivered", "bounced")

    def __init__(self, sender, to):
        self.sender = sender      # Actor
        self.to = to              # JID
        self.delivered = 0        # copies seen by a recipient
        self.bounced = None       # error condition, once bounced


# ---- the XMPP client of one session ------------------------------------------

class Client(slixmpp.ClientXMPP):
    """One session of an actor. Never reconnects by itself."""

    def __init__(self, actor, scenario):
        super().__init__(actor.full, actor.password)
        self.actor = actor
        self.scenario = scenario
        self.outcome = asyncio.get_event_loop().create_future()
        self.closed = asyncio.get_event_loop().create_future()
        self.ca_certs = Path(scenario.args.cafile)
        self.use_ipv6 = False
        self.auto_authorize = None    # never answer subscriptions ourselves
        self.auto_subscribe = False
        self.whitespace_keepalive = False
        self.send_initial_presence = True
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0092", {"software_name": "xmpp-scenario",
                                          "version": "1", "os": ""})
        self.register_plugin("xep_0199")
        self.register_handler(Callback(
            "scenario message", MatchXPath("{%s}message" % NS_CLIENT),
            lambda s: actor.on_message(self, s)))
        self.register_handler(Callback(
            "scenario presence", MatchXPath("{%s}presence" % NS_CLIENT),
            lambda s: actor.on_presence(self, s)))
        self.add_event_handler("session_start", self._session_start)
        self.add_event_handler("failed_all_auth",
                               lambda _: self._fail("authentication failed"))
        self.add_event_handler("connection_failed",
                               lambda e: self._fail("connection failed: %s" % e,
                                                    transient=True))
        self.add_event_handler("ssl_invalid_chain", lambda e: self._fail(
            "TLS: certificate not trusted for %s: %s" % (actor.jid.domain, e)))
        self.add_event_handler("stream_error", lambda e: self._fail(
            "stream error: %s" % e["condition"]))
        self.add_event_handler("disconnected", self._disconnected)
        if scenario.args.transcript:
            self.add_filter("in", lambda s: self._trace("<-", s))
            self.add_filter("out", lambda s: self._trace("->", s))

    # Host given on the command line: no DNS. The certificate is still
    # verified for the JID's domain (default_domain = server_hostname).
    async def get_dns_records(self, domain, port=None):
        return [(self.actor.jid.domain, self.actor.host, self.actor.port)]

    # slixmpp does not enforce force_starttls: refuse to go on (SASL,
    # bind) on a stream that is not encrypted.
    async def _handle_stream_features(self, features):
        if "starttls" not in self.features and \
                "starttls" not in features["features"]:
            self._fail("server offered no STARTTLS; plaintext refused")
            return True
        return await super()._handle_stream_features(features)

    def start(self):
        self.default_domain = self.actor.jid.domain
        self.connect(address=(self.actor.host, self.actor.port))

    def _trace(self, arrow, stanza):
        tag = stanza.xml.tag
        if tag.startswith("{%s}" % NS_CLIENT) and \
                tag.split("}", 1)[1] in ("message", "presence", "iq"):
            self.scenario.emit("  %8.3f %-6s %s %s" % (
                time.monotonic() - self.scenario.t0, self.actor.name, arrow,
                render(stanza.xml)))
        return stanza

    def _fail(self, why, transient=False):
        """Ends a session attempt that has not reached session_start."""
        if not self.outcome.done():
            self.outcome.set_result((why, transient))
            Scenario.abort(self)

    def _disconnected(self, reason):
        if not self.closed.done():
            self.closed.set_result(reason)
        self._fail("disconnected before the session started (%s)" % reason,
                   transient=True)
        self.actor.on_disconnected(self, reason)

    async def _session_start(self, _):
        try:
            ssl_obj = self.transport.get_extra_info("ssl_object") \
                if self.transport else None
            if ssl_obj is None:
                self._fail("session without TLS; refused")
                return
            iq = self.Iq()
            iq["type"] = "get"
            ET.SubElement(iq.xml, "{%s}query" % NS_ROSTER)
            await iq.send(timeout=self.scenario.args.timeout)
            if self.send_initial_presence:
                self.send_presence()
            if not self.outcome.done():
                self.outcome.set_result(None)
        except (IqError, IqTimeout) as exc:
            self._fail("roster get failed: %s" % exc)


# ---- an account and its inboxes ------------------------------------------------

class Actor:
    def __init__(self, scenario, name, jid, password, host, port):
        self.scenario = scenario
        self.name = name
        self.jid = jid              # full JID (with resource)
        self.full = jid.full
        self.bare = jid.bare
        self.password = password
        self.host = host
        self.port = port
        self.client = None          # the current session, if any
        self.latest = None          # the newest session (maybe still starting)
        self.messages = []          # unconsumed messages (Message)
        self.presences = []         # unconsumed presences of this session
        self.receipts = []          # (from JID, id) of <received/>
        self.bounces = []           # error replies to our non-flood sends
        self.sent_ids = set()
        self.last_sent = {}         # bare JID -> id of the last message
        self.seq = 0
        self.last_error = None

    @property
    def connected(self):
        return self.client is not None

    def new_id(self, tag="m"):
        self.seq += 1
        return "%s-%s-%s%d" % (self.scenario.tag, self.name, tag, self.seq)

    def require_client(self):
        if self.client is None:
            raise StepFailed("%s is not connected (last: %s)"
                             % (self.name, self.last_error or "never connected"))
        return self.client

    # -- incoming --
    def on_message(self, client, stanza):
        m = Message(stanza)
        sc = self.scenario
        rec = sc.floods.get(m.id)
        # A flood message counts as delivered only at its recipient and from
        # its sender; anything else with its id lands in the inbox, where it
        # shows up as unexpected.
        if rec is not None:
            if m.type == "error" and rec.sender is self:
                if rec.bounced is None:
                    rec.bounced = m.cond or "(no condition)"
                sc.notify()
                return
            if m.frm.bare == rec.sender.bare and rec.to.bare == self.bare \
                    and m.type != "error":
                rec.delivered += 1
                sc.notify()
                return
        if m.type == "error" and m.id in self.sent_ids:
            self.bounces.append(m)
        elif m.receipt_for is not None and m.body is None:
            self.receipts.append((m.frm, m.receipt_for))
        else:
            self.messages.append(m)
        sc.notify()

    def on_presence(self, client, stanza):
        p = Presence(stanza)
        # Presence belongs to a session; the newest one counts, also while
        # it is starting (probe answers follow initial presence at once).
        if p.frm.bare != self.bare and client is self.latest:
            self.presences.append(p)
            self.scenario.notify()

    def on_disconnected(self, client, reason):
        if client is self.client:
            self.client = None
            self.last_error = "disconnected (%s)" % (reason or "closed")
            self.scenario.notify()


# ---- the scenario: parsing and running steps ---------------------------------------

# verb -> (positional argument names, allowed options, flag options)
VERBS = {
    "connect": ([], {"timeout"}, {"retry", "nopresence"}),
    "disconnect": ([], {"timeout"}, set()),
    "kill": ([], set(), set()),
    "await-disconnect": ([], {"timeout"}, set()),
    "presence": ([], {"show", "status", "priority"}, {"unavailable"}),
    "subscribe": (["jid"], set(), set()),
    "subscribed": (["jid"], set(), set()),
    "unsubscribe": (["jid"], set(), set()),
    "unsubscribed": (["jid"], set(), set()),
    "expect-presence": (["jid", "type"], {"show", "status", "timeout"}, set()),
    "expect-roster": (["jid", "sub"], {"timeout"}, {"ask"}),
    "forget": ([], set(), set()),
    "send": (["jid", "type", "text"], {"thread", "state", "id", "cond"},
             {"receipt"}),
    "expect-message": (["jid", "type", "text"],
                       {"thread", "state", "cond", "timeout"},
                       {"receipt", "delayed"}),
    "expect-receipt": (["jid"], {"id", "timeout"}, set()),
    "expect-bounce": (["jid", "cond"], {"type", "text", "timeout"}, set()),
    "expect-no-message": (["jid", "seconds"], set(), set()),
    "iq-ping": (["jid"], {"timeout"}, set()),
    "iq-version": (["jid"], {"name", "timeout"}, set()),
    "iq-disco": (["jid"], {"feature", "timeout"}, set()),
    "iq-vcard": (["jid"], {"fn", "timeout"}, set()),
    "vcard-set": (["fn"], {"timeout"}, set()),
    "iq-expect-error": (["cond", "kind", "jid"], {"type", "text", "timeout"},
                        set()),
    "flood": (["jid", "n", "type"], {"size", "interval"}, set()),
    "collect": (["jid", "seconds"], {"delivered", "bounced"}, set()),
    # global (pseudo-actor "@")
    "sleep": (["seconds"], set(), set()),
    "note": (["text"], set(), set()),
    "signal": (["file"], set(), set()),
    "wait-file": (["file"], {"timeout"}, set()),
}
GLOBAL_VERBS = {"sleep", "note", "signal", "wait-file"}
ALIASES = {
    "approve": ("subscribed", []),
    "cancel": ("unsubscribed", []),
    "deny": ("unsubscribed", []),
    "expect-subscribe": ("expect-presence", ["subscribe"]),
    "expect-subscribed": ("expect-presence", ["subscribed"]),
    "expect-unsubscribe": ("expect-presence", ["unsubscribe"]),
    "expect-unsubscribed": ("expect-presence", ["unsubscribed"]),
}


class Step:
    def __init__(self, index, raw, actor, verb, args, opts):
        self.index = index
        self.raw = raw
        self.actor = actor      # Actor, or None for global steps (@)
        self.verb = verb
        self.args = args        # dict name -> raw (escaped) field
        self.opts = opts        # dict name -> unescaped value (True: flag)
        self.extra = []         # optional positional (forget's JID)

    def label(self):
        return self.raw if len(self.raw) <= 160 else self.raw[:157] + "..."


class Scenario:
    def __init__(self, args):
        self.args = args
        self.tag = secrets.token_hex(3)
        self.t0 = time.monotonic()
        self.actors = {}
        self.steps = []
        self.floods = {}            # id -> FloodRecord
        # Every client ever made: slixmpp's background tasks must not be
        # garbage-collected while pending (asyncio would log errors).
        self.sessions = []
        self._waiters = set()

    # -- output --
    def emit(self, line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    # -- waiting: every incoming stanza wakes all waiters --
    def notify(self):
        for ev in self._waiters:
            ev.set()

    async def wait_until(self, predicate, timeout):
        """predicate() until it returns something truthy, or None."""
        loop = asyncio.get_event_loop()
        deadline = loop.time() + timeout
        while True:
            r = predicate()
            if r:
                return r
            left = deadline - loop.time()
            if left <= 0:
                return None
            ev = asyncio.Event()
            self._waiters.add(ev)
            try:
                await asyncio.wait_for(ev.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiters.discard(ev)

    # -- parsing --
    def add_account(self, spec):
        m = re.fullmatch(r"(?:([A-Za-z0-9_-]+)=)?([^:]+):(.*)@([^@]+)", spec)
        if not m:
            raise Usage("bad --account %r (want [NAME=]JID:PASSWORD@HOST[:PORT])"
                        % spec)
        name, jidtext, password, hostport = m.groups()
        jid = parse_jid(jidtext)
        if not jid.user:
            raise Usage("account JID %r has no local part" % jidtext)
        if not jid.resource:
            jid = JID("%s/%s" % (jid.bare, self.args.resource))
        host, _, port = hostport.partition(":")
        try:
            port = int(port) if port else 5222
        except ValueError:
            raise Usage("bad port in --account %r" % spec)
        name = name or jid.user
        if name in self.actors:
            raise Usage("actor name %r used twice (use NAME=JID)" % name)
        self.actors[name] = Actor(self, name, jid, password, host, port)

    def resolve(self, text):
        """A JID argument: JID, actor NAME (bare) or NAME/ (full)."""
        text = unescape(text)
        if text.endswith("/") and text[:-1] in self.actors:
            return JID(self.actors[text[:-1]].full)
        if "@" not in text and "." not in text:
            if text in self.actors:
                return JID(self.actors[text].bare)
            raise Usage("%r is neither a JID nor an actor" % text)
        return parse_jid(text)

    def parse_step(self, index, raw):
        fields = split_fields(raw)
        if len(fields) < 2:
            raise Usage("step %r: want ACTOR:VERB[:ARG...]" % raw)
        who, verb = fields[0], fields[1]
        extra_pos = []
        if verb in ALIASES:
            verb, extra_pos = ALIASES[verb]
        if verb not in VERBS:
            raise Usage("step %r: unknown verb %r" % (raw, fields[1]))
        posnames, optnames, flagnames = VERBS[verb]
        if who == "@":
            if verb not in GLOBAL_VERBS:
                raise Usage("step %r: %s needs an actor" % (raw, verb))
            actor = None
        else:
            if verb in GLOBAL_VERBS:
                raise Usage("step %r: %s is a global step (actor @)" % (raw, verb))
            actor = self.actors.get(who)
            if actor is None:
                raise Usage("step %r: no account named %r" % (raw, who))
        rest = fields[2:]
        if verb == "expect-presence" and extra_pos:
            rest = rest[:1] + extra_pos + rest[1:]
        if len(rest) < len(posnames):
            raise Usage("step %r: %s wants %s" % (
                raw, verb, ":".join(n.upper() for n in posnames)))
        args = dict(zip(posnames, rest))
        opts, extra = {}, []
        if verb == "forget" and rest:
            extra, rest = rest[:1], rest[1:]
            self.resolve(extra[0])
        for f in rest[len(posnames):]:
            key, eq, val = f.partition("=")
            if eq and key in optnames:
                opts[key] = unescape(val)
            elif not eq and key in flagnames:
                opts[key] = True
            else:
                raise Usage("step %r: unknown option %r for %s (options: %s)" % (
                    raw, f, verb, " ".join(sorted(optnames | flagnames)) or "none"))
        step = Step(index, raw, actor, verb, args, opts)
        step.extra = extra
        self.check_step(step)
        return step

    def check_step(self, st):
        """Usage checks that need no connection (run before connecting)."""
        a, o = st.args, st.opts
        if "jid" in a:
            self.resolve(a["jid"])
        if "type" in a:
            allowed = PRES_TYPES if st.verb == "expect-presence" else MSG_TYPES
            if a["type"] not in allowed:
                raise Usage("step %r: type must be one of %s"
                            % (st.raw, " ".join(allowed)))
        if "text" in a and st.verb != "note":
            parse_text(a["text"], st.verb == "expect-message")
        if o.get("state") not in (None,) + CHAT_STATES:
            raise Usage("step %r: state must be one of %s"
                        % (st.raw, " ".join(CHAT_STATES)))
        if st.verb == "expect-roster" and a["sub"] not in ROSTER_SUBS:
            raise Usage("step %r: SUB must be one of %s"
                        % (st.raw, " ".join(ROSTER_SUBS)))
        if st.verb == "iq-expect-error" and a["kind"] not in IQ_KINDS:
            raise Usage("step %r: KIND must be one of %s"
                        % (st.raw, " ".join(IQ_KINDS)))
        for key in ("n", "seconds", "size", "interval", "delivered", "bounced",
                    "timeout", "priority"):
            v = a.get(key, o.get(key))
            if v is None:
                continue
            try:
                x = float(v) if key in ("seconds", "timeout") else int(v)
            except ValueError:
                raise Usage("step %r: %s must be a number" % (st.raw, key))
            if key != "priority" and x < 0:
                raise Usage("step %r: %s must not be negative" % (st.raw, key))

    def timeout(self, st):
        return float(st.opts.get("timeout", self.args.timeout))

    # -- sessions --
    async def connect(self, actor, timeout, retry=False, presence=True):
        loop = asyncio.get_event_loop()
        deadline = loop.time() + timeout
        while True:
            client = Client(actor, self)
            self.sessions.append(client)
            client.send_initial_presence = presence
            actor.client = None
            actor.latest = client
            actor.presences.clear()
            client.start()
            left = max(0.1, deadline - loop.time())
            try:
                outcome = await asyncio.wait_for(asyncio.shield(client.outcome),
                                                 left)
            except asyncio.TimeoutError:
                outcome = ("no session within %.1f s" % timeout, False)
            if outcome is None:
                actor.client = client
                actor.last_error = None
                return
            why, transient = outcome
            await self.drop(client)
            if retry and transient and loop.time() + 0.3 < deadline:
                await asyncio.sleep(0.3)
                continue
            raise ConnectFailed("%s (%s:%d): %s" % (actor.full, actor.host,
                                                    actor.port, why))

    @staticmethod
    def abort(client):
        """Drops the TCP connection now (idempotent: asyncio's SSL transport
        raises on a second abort)."""
        client.cancel_connection_attempt()
        t = client.transport
        if t is not None and not t.is_closing():
            try:
                t.abort()
            except (AttributeError, RuntimeError, OSError):
                pass

    async def drop(self, client, grace=0.0):
        """Closes a session for good (bounded): with grace, a clean stream
        close first; then the TCP connection is dropped."""
        client.cancel_connection_attempt()
        waits = [0.2]
        if grace > 0 and client.transport is not None and \
                not client.transport.is_closing():
            client.disconnect(wait=grace)
            waits.insert(0, grace + 0.5)
        for w in waits:
            if not client.closed.done():
                try:
                    await asyncio.wait_for(asyncio.shield(client.closed), w)
                except asyncio.TimeoutError:
                    pass
            self.abort(client)
        if not client.closed.done():
            client.closed.set_result("dropped")

    # -- the steps --
    async def run_step(self, st):
        """Returns a detail string, raises StepFailed / ConnectFailed."""
        handler = getattr(self, "do_" + st.verb.replace("-", "_"))
        return await handler(st, st.actor)

    async def do_connect(self, st, me):
        if me.client is not None:
            raise StepFailed("%s is already connected" % me.name)
        await self.connect(me, self.timeout(st), retry=bool(st.opts.get("retry")),
                           presence=not st.opts.get("nopresence"))

    async def do_disconnect(self, st, me):
        c = me.require_client()
        c.send_presence(ptype="unavailable")
        me.client = None
        me.last_error = "disconnected by step %d" % st.index
        await self.drop(c, grace=min(2.0, self.timeout(st)))

    async def do_kill(self, st, me):
        c = me.require_client()
        me.client = None
        me.last_error = "killed by step %d" % st.index
        self.abort(c)
        await self.drop(c)

    async def do_await_disconnect(self, st, me):
        if not await self.wait_until(lambda: me.client is None, self.timeout(st)):
            raise StepFailed("the server did not close %s's session within %g s"
                             % (me.name, self.timeout(st)))
        return me.last_error

    async def do_presence(self, st, me):
        c = me.require_client()
        o = st.opts
        if o.get("unavailable"):
            c.send_presence(ptype="unavailable", pstatus=o.get("status"))
        else:
            c.send_presence(pshow=o.get("show"), pstatus=o.get("status"),
                            ppriority=o.get("priority"))

    async def _send_sub(self, st, me, ptype):
        c = me.require_client()
        c.send_presence(pto=self.resolve(st.args["jid"]), ptype=ptype)

    async def do_subscribe(self, st, me):
        await self._send_sub(st, me, "subscribe")

    async def do_subscribed(self, st, me):
        await self._send_sub(st, me, "subscribed")

    async def do_unsubscribe(self, st, me):
        await self._send_sub(st, me, "unsubscribe")

    async def do_unsubscribed(self, st, me):
        await self._send_sub(st, me, "unsubscribed")

    async def do_expect_presence(self, st, me):
        want = self.resolve(st.args["jid"])
        ptype = st.args["type"]
        o = st.opts

        def match():
            for i, p in enumerate(me.presences):
                if not jid_matches(p.frm, want) or p.type != ptype:
                    continue
                if "show" in o and (p.show or "") != o["show"]:
                    continue
                if "status" in o and (p.status or "") != o["status"]:
                    continue
                # consume it and every older presence from that sender
                me.presences[:] = [q for j, q in enumerate(me.presences)
                                   if j > i or not jid_matches(q.frm, want)]
                return p
            return None

        p = await self.wait_until(match, self.timeout(st))
        if p is None:
            seen = [q.describe() for q in me.presences if jid_matches(q.frm, want)]
            raise StepFailed("no presence %s from %s within %g s; from it: %s" % (
                ptype, want, self.timeout(st), "; ".join(seen) or "nothing"))
        return p.describe() if (p.show or p.status) else None

    async def do_forget(self, st, me):
        if st.extra:
            want = self.resolve(st.extra[0])
            me.presences[:] = [p for p in me.presences
                               if not jid_matches(p.frm, want)]
        else:
            me.presences.clear()

    async def _roster_item(self, me, want):
        c = me.require_client()
        iq = c.Iq()
        iq["type"] = "get"
        ET.SubElement(iq.xml, "{%s}query" % NS_ROSTER)
        res = await iq.send(timeout=5)
        for item in res.xml.iter("{%s}item" % NS_ROSTER):
            if JID(item.get("jid") or "").bare == want.bare:
                return (item.get("subscription") or "none", item.get("ask"))
        return ("absent", None)

    async def do_expect_roster(self, st, me):
        want = self.resolve(st.args["jid"])
        sub, ask = st.args["sub"], bool(st.opts.get("ask"))
        loop = asyncio.get_event_loop()
        deadline = loop.time() + self.timeout(st)
        got = None
        while True:
            try:
                got = await self._roster_item(me, want)
            except (IqError, IqTimeout) as exc:
                raise StepFailed("roster get failed: %s" % exc)
            if got[0] == sub and (got[1] == "subscribe") == ask and \
                    (ask or got[1] is None):
                return None
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.1)
        raise StepFailed("roster item %s: expected subscription=%s%s, got %s%s" % (
            want, sub, " ask=subscribe" if ask else "", got[0],
            " ask=%s" % got[1] if got[1] else ""))

    async def do_send(self, st, me):
        c = me.require_client()
        to = self.resolve(st.args["jid"])
        mtype = st.args["type"]
        body = parse_text(st.args["text"], False)
        o = st.opts
        mid = o.get("id") or me.new_id()
        msg = c.Message()
        msg["to"] = to
        msg["id"] = mid
        x = msg.xml
        if mtype != "normal":
            x.set("type", mtype)
        if body is not None:
            ET.SubElement(x, "{%s}body" % NS_CLIENT).text = body
        if "thread" in o:
            ET.SubElement(x, "{%s}thread" % NS_CLIENT).text = o["thread"]
        if "state" in o:
            ET.SubElement(x, "{%s}%s" % (NS_CHATSTATES, o["state"]))
        if o.get("receipt"):
            ET.SubElement(x, "{%s}request" % NS_RECEIPTS)
        if mtype == "error":
            err = ET.SubElement(x, "{%s}error" % NS_CLIENT, {"type": "cancel"})
            ET.SubElement(err, "{%s}%s" % (NS_STANZAS,
                                           o.get("cond", "undefined-condition")))
        me.sent_ids.add(mid)
        me.last_sent[to.bare] = mid
        msg.send()
        return "id=%s" % mid

    def _mismatch(self, st, m, body):
        """Why message m does not match the step (None if it does)."""
        o, bad = st.opts, []
        if m.type != st.args["type"]:
            bad.append("type %s, expected %s" % (m.type, st.args["type"]))
        if body is not ANY and m.body != body:
            if body is not None and m.body is not None and \
                    max(len(body), len(m.body)) > 60:
                bad.append("body %s, expected %s (first difference at char %d)" % (
                    show_text(m.body), show_text(body),
                    first_difference(m.body, body)))
            else:
                bad.append("body %s, expected %s" % (show_text(m.body),
                                                     show_text(body)))
        for key in ("thread", "state"):
            if getattr(m, key) != o.get(key):
                bad.append("%s %s, expected %s" % (key, getattr(m, key), o.get(key)))
        if m.receipt_request != bool(o.get("receipt")):
            bad.append("receipt request %s, expected %s" % (
                "present" if m.receipt_request else "absent",
                "present" if o.get("receipt") else "absent"))
        if m.delayed != bool(o.get("delayed")):
            bad.append("<delay/> %s, expected %s" % (
                "present" if m.delayed else "absent",
                "present" if o.get("delayed") else "absent"))
        if m.type == "error" and st.args["type"] == "error":
            want = o.get("cond", "undefined-condition")
            if m.cond != want:
                bad.append("condition %s, expected %s" % (m.cond, want))
        return "; ".join(bad) or None

    async def do_expect_message(self, st, me):
        want = self.resolve(st.args["jid"])
        body = parse_text(st.args["text"], True)

        def first():
            for i, m in enumerate(me.messages):
                if jid_matches(m.frm, want):
                    return (i, m)
            return None

        found = await self.wait_until(first, self.timeout(st))
        if found is None:
            why = "no message from %s within %g s" % (want, self.timeout(st))
            other = [m.describe() for m in me.messages][:3]
            if other:
                why += "; unconsumed from others: " + " | ".join(other)
            sender = self.actor_of(want)
            if sender is not None:
                b = [m.describe() for m in sender.bounces
                     if m.frm.bare == me.bare]
                if b:
                    why += "; the sender got errors: " + " | ".join(b[-3:])
            raise StepFailed(why)
        i, m = found
        del me.messages[i]
        bad = self._mismatch(st, m, body)
        if bad:
            raise StepFailed("oldest message from %s (id=%s) differs: %s"
                             % (m.frm, m.id, bad))
        if st.opts.get("receipt"):
            ack = me.require_client().Message()
            ack["to"] = m.frm
            ack["id"] = me.new_id("r")
            ET.SubElement(ack.xml, "{%s}received" % NS_RECEIPTS, {"id": m.id})
            ack.send()
        return "id=%s" % m.id

    def actor_of(self, jid):
        for a in self.actors.values():
            if a.bare == jid.bare:
                return a
        return None

    async def do_expect_receipt(self, st, me):
        want = self.resolve(st.args["jid"])
        mid = st.opts.get("id") or me.last_sent.get(want.bare)
        if not mid:
            raise StepFailed("nothing was sent to %s" % want)

        def match():
            for i, (frm, rid) in enumerate(me.receipts):
                if jid_matches(frm, want) and rid == mid:
                    return me.receipts.pop(i)
            return None

        if not await self.wait_until(match, self.timeout(st)):
            raise StepFailed("no receipt for id=%s from %s within %g s; receipts "
                             "seen: %s" % (mid, want, self.timeout(st),
                                           [r for _, r in me.receipts] or "none"))

    async def do_expect_bounce(self, st, me):
        want = self.resolve(st.args["jid"])
        mid = me.last_sent.get(want.bare)
        if not mid:
            raise StepFailed("nothing was sent to %s" % want)

        def match():
            for i, m in enumerate(me.bounces):
                if m.id == mid:
                    return me.bounces.pop(i)
            return None

        m = await self.wait_until(match, self.timeout(st))
        if m is None:
            raise StepFailed("no error reply to id=%s within %g s" % (
                mid, self.timeout(st)))
        bad = []
        if m.cond != st.args["cond"]:
            bad.append("condition %s, expected %s" % (m.cond, st.args["cond"]))
        for key, got in (("type", m.err_type), ("text", m.err_text)):
            if key in st.opts and got != st.opts[key]:
                bad.append("%s %r, expected %r" % (key, got, st.opts[key]))
        if bad:
            raise StepFailed("error reply from %s: %s" % (m.frm, "; ".join(bad)))
        return "%s from %s%s" % (m.cond, m.frm,
                                 " (%s)" % m.err_text if m.err_text else "")

    async def do_expect_no_message(self, st, me):
        want = self.resolve(st.args["jid"])
        secs = float(st.args["seconds"])
        found = await self.wait_until(
            lambda: next((m for m in me.messages if jid_matches(m.frm, want)),
                         None), secs)
        if found is not None:
            raise StepFailed("expected nothing from %s, got %s"
                             % (want, found.describe()))

    # -- iq --
    async def _iq(self, st, me, kind, to, itype="get", payload=None):
        c = me.require_client()
        ns, name = IQ_KINDS[kind]
        iq = c.Iq()
        iq["type"] = itype
        if to is not None:
            iq["to"] = to
        iq.xml.append(payload if payload is not None
                      else ET.Element("{%s}%s" % (ns, name)))
        return await iq.send(timeout=self.timeout(st))

    async def _iq_ok(self, st, me, kind):
        to = self.resolve(st.args["jid"])
        try:
            return await self._iq(st, me, kind, to)
        except IqError as exc:
            cond, etype, text = error_info(exc.iq.xml)
            raise StepFailed("%s %s: error %s type=%s%s" % (
                kind, to, cond, etype, " text=%r" % text if text else ""))
        except IqTimeout:
            raise StepFailed("%s %s: no reply within %g s"
                             % (kind, to, self.timeout(st)))

    async def do_iq_ping(self, st, me):
        await self._iq_ok(st, me, "ping")

    async def do_iq_version(self, st, me):
        res = await self._iq_ok(st, me, "version")
        q = child(res.xml, NS_VERSION, "query")
        get = (lambda n: (q.findtext("{%s}%s" % (NS_VERSION, n)) or "")
               if q is not None else "")
        name = get("name")
        if "name" in st.opts and name != st.opts["name"]:
            raise StepFailed("version name %r, expected %r" % (name, st.opts["name"]))
        if not name:
            raise StepFailed("version reply without a name")
        return "%s %s" % (name, get("version"))

    async def do_iq_disco(self, st, me):
        res = await self._iq_ok(st, me, "disco")
        q = child(res.xml, NS_DISCO_INFO, "query")
        if q is None:
            raise StepFailed("disco#info result without <query/>")
        feats = [f.get("var") for f in q.iter("{%s}feature" % NS_DISCO_INFO)]
        ids = ["%s/%s" % (i.get("category"), i.get("type"))
               for i in q.iter("{%s}identity" % NS_DISCO_INFO)]
        if "feature" in st.opts and st.opts["feature"] not in feats:
            raise StepFailed("feature %s not among %s" % (st.opts["feature"], feats))
        return "identities %s, %d features" % (",".join(ids) or "none", len(feats))

    async def do_iq_vcard(self, st, me):
        res = await self._iq_ok(st, me, "vcard")
        v = child(res.xml, NS_VCARD, "vCard")
        fn = v.findtext("{%s}FN" % NS_VCARD) if v is not None else None
        if "fn" in st.opts and fn != st.opts["fn"]:
            raise StepFailed("vCard FN %s, expected %s" % (
                show_text(fn), show_text(st.opts["fn"])))
        return "FN %s" % show_text(fn)

    async def do_vcard_set(self, st, me):
        v = ET.Element("{%s}vCard" % NS_VCARD)
        ET.SubElement(v, "{%s}FN" % NS_VCARD).text = unescape(st.args["fn"])
        try:
            await self._iq(st, me, "vcard", None, itype="set", payload=v)
        except IqError as exc:
            raise StepFailed("vCard set: error %s" % (error_info(exc.iq.xml),))
        except IqTimeout:
            raise StepFailed("vCard set: no reply")

    async def do_iq_expect_error(self, st, me):
        to = self.resolve(st.args["jid"])
        kind = st.args["kind"]
        try:
            await self._iq(st, me, kind, to)
        except IqError as exc:
            cond, etype, text = error_info(exc.iq.xml)
            bad = []
            if cond != st.args["cond"]:
                bad.append("condition %s, expected %s" % (cond, st.args["cond"]))
            for key, got in (("type", etype), ("text", text)):
                if key in st.opts and got != st.opts[key]:
                    bad.append("%s %r, expected %r" % (key, got, st.opts[key]))
            if bad:
                raise StepFailed("%s %s: %s" % (kind, to, "; ".join(bad)))
            return "%s type=%s%s from %s" % (cond, etype,
                                             " text=%r" % text if text else "",
                                             exc.iq["from"].full or "(own account)")
        except IqTimeout:
            raise StepFailed("%s %s: no reply within %g s (expected error %s)"
                             % (kind, to, self.timeout(st), st.args["cond"]))
        raise StepFailed("%s %s: result, expected error %s"
                         % (kind, to, st.args["cond"]))

    # -- counting mode --
    async def do_flood(self, st, me):
        c = me.require_client()
        to = self.resolve(st.args["jid"])
        n, mtype = int(st.args["n"]), st.args["type"]
        size = int(st.opts.get("size", 0))
        interval = int(st.opts.get("interval", 0)) / 1000.0
        for i in range(1, n + 1):
            mid = "%s-%s-f%d-%d" % (self.tag, me.name, st.index, i)
            body = "flood %d/%d from %s step %d" % (i, n, me.name, st.index)
            if len(body) < size:
                body += " " + generated_body(size - len(body) - 1)
            self.floods[mid] = FloodRecord(me, to)
            msg = c.Message()
            msg["to"] = to
            msg["id"] = mid
            if mtype != "normal":
                msg.xml.set("type", mtype)
            ET.SubElement(msg.xml, "{%s}body" % NS_CLIENT).text = body
            msg.send()
            if interval:
                await asyncio.sleep(interval)
        return "%d messages queued" % n

    def flood_counts(self, records):
        sent = len(records)
        delivered = sum(1 for r in records if r.delivered)
        bounced = sum(1 for r in records if r.bounced)
        both = sum(1 for r in records if r.delivered and r.bounced)
        dups = sum(r.delivered - 1 for r in records if r.delivered > 1)
        unacc = sum(1 for r in records if not r.delivered and not r.bounced)
        conds = {}
        for r in records:
            if r.bounced:
                conds[r.bounced] = conds.get(r.bounced, 0) + 1
        return sent, delivered, bounced, unacc, dups, both, conds

    @staticmethod
    def format_counts(c):
        sent, delivered, bounced, unacc, dups, both, conds = c
        s = "sent=%d delivered=%d bounced=%d unaccounted=%d duplicates=%d" % (
            sent, delivered, bounced, unacc, dups)
        if both:
            s += " both=%d" % both
        return s + " conditions=%s" % (
            ",".join("%s:%d" % kv for kv in sorted(conds.items())) or "-")

    async def do_collect(self, st, me):
        peer = self.resolve(st.args["jid"])
        recs = [r for r in self.floods.values()
                if (r.sender is me and r.to.bare == peer.bare) or
                (r.sender.bare == peer.bare and r.to.bare == me.bare)]
        if not recs:
            raise StepFailed("no flood messages between %s and %s" % (me.name, peer))
        await self.wait_until(
            lambda: all(r.delivered or r.bounced for r in recs),
            float(st.args["seconds"]))
        c = self.flood_counts(recs)
        detail = self.format_counts(c)
        bad = []
        if c[3]:
            bad.append("%d unaccounted" % c[3])
        for key, idx in (("delivered", 1), ("bounced", 2)):
            if key in st.opts and c[idx] != int(st.opts[key]):
                bad.append("%s=%d, expected %s" % (key, c[idx], st.opts[key]))
        if bad:
            raise StepFailed("%s: %s" % (detail, "; ".join(bad)))
        return detail

    # -- global steps --
    async def do_sleep(self, st, me):
        await asyncio.sleep(float(st.args["seconds"]))

    async def do_note(self, st, me):
        return unescape(st.args["text"])

    async def do_signal(self, st, me):
        path = unescape(st.args["file"])
        with open(path, "w") as f:
            f.write("%d\n" % os.getpid())

    async def do_wait_file(self, st, me):
        path = unescape(st.args["file"])
        loop = asyncio.get_event_loop()
        deadline = loop.time() + self.timeout(st)
        while not os.path.exists(path):
            if loop.time() >= deadline:
                raise StepFailed("%s did not appear within %g s"
                                 % (path, self.timeout(st)))
            await asyncio.sleep(0.05)

    # -- the whole run --
    async def run(self):
        rc = EXIT_OK
        try:
            results = await asyncio.gather(
                *(self.connect(a, self.args.timeout)
                  for a in self.actors.values()), return_exceptions=True)
            for a, r in zip(self.actors.values(), results):
                if isinstance(r, BaseException):
                    self.emit("FAIL connect %s: %s" % (a.name, r))
                    rc = EXIT_CONNECT
                else:
                    self.emit("ok connect %s as %s (%d ms)" % (
                        a.name, a.full, (time.monotonic() - self.t0) * 1000))
            if rc:
                return rc
            for st in self.steps:
                t = time.monotonic()
                try:
                    detail = await self.run_step(st)
                except StepFailed as exc:
                    self.emit("FAIL %s: %s" % (st.label(), exc))
                    rc = EXIT_FAIL
                except ConnectFailed as exc:
                    self.emit("FAIL %s: %s" % (st.label(), exc))
                    rc = EXIT_CONNECT
                except Exception as exc:  # a bug here, not in the server
                    log.exception("step %s", st.raw)
                    self.emit("FAIL %s: internal error %r" % (st.label(), exc))
                    rc = EXIT_FAIL
                else:
                    self.emit("ok %s (%d ms)%s" % (
                        st.label(), (time.monotonic() - t) * 1000,
                        ": %s" % detail if detail else ""))
                if rc and not self.args.keep_going:
                    break
            if self.floods:
                rc = max(rc, await self.report(settle=(rc == EXIT_OK)))
            return rc
        finally:
            await asyncio.gather(*(self.drop(a.client, grace=1.0)
                                   for a in self.actors.values()
                                   if a.client is not None),
                                 return_exceptions=True)

    async def report(self, settle):
        recs = list(self.floods.values())
        if settle:
            await self.wait_until(
                lambda: all(r.delivered or r.bounced for r in recs),
                self.args.settle)
        rc = EXIT_OK
        for a in self.actors.values():
            mine = [r for r in recs if r.sender is a]
            if mine:
                self.emit("report %s %s" % (a.name, self.format_counts(
                    self.flood_counts(mine))))
        total = self.flood_counts(recs)
        self.emit("report total %s" % self.format_counts(total))
        problems = []
        if total[3]:
            problems.append("%d unaccounted" % total[3])
        for want, idx, key in ((self.args.expect_delivered, 1, "delivered"),
                               (self.args.expect_bounced, 2, "bounced")):
            if want is not None and total[idx] != want:
                problems.append("%s=%d, expected %d" % (key, total[idx], want))
        if problems:
            self.emit("FAIL report: %s" % "; ".join(problems))
            rc = EXIT_FAIL
        return rc


def main(argv):
    ap = argparse.ArgumentParser(
        prog="xmpp-scenario.py", add_help=True,
        description="Scripted multi-user XMPP client (see the file's header).")
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--account", action="append", default=[], required=True)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--resource", default="scenario")
    ap.add_argument("--transcript", action="store_true")
    ap.add_argument("--keep-going", action="store_true")
    ap.add_argument("--max-time", type=float, default=600.0)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--expect-delivered", type=int)
    ap.add_argument("--expect-bounced", type=int)
    ap.add_argument("--debug", action="store_true")
    ap.add_argument("steps", nargs="*", metavar="STEP")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.debug:
        logging.getLogger().setLevel(logging.DEBUG)
    sc = Scenario(args)
    try:
        if not os.path.isfile(args.cafile):
            raise Usage("--cafile %s: no such file" % args.cafile)
        if args.timeout <= 0 or args.max_time <= 0:
            raise Usage("--timeout and --max-time must be positive")
        for spec in args.account:
            sc.add_account(spec)
        for i, raw in enumerate(args.steps, 1):
            sc.steps.append(sc.parse_step(i, raw))
    except Usage as exc:
        sys.stderr.write("xmpp-scenario: %s\n" % exc)
        return EXIT_USAGE

    async def bounded():
        try:
            return await asyncio.wait_for(sc.run(), args.max_time)
        except asyncio.TimeoutError:
            sc.emit("FAIL run: --max-time %g s exceeded" % args.max_time)
            return EXIT_FAIL

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(bounded())
    finally:
        # Let slixmpp's cancelled tasks finish quietly.
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending,
                                                   return_exceptions=True))
        loop.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
