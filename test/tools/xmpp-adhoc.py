#!/usr/bin/python3
"""xmpp-adhoc.py: drive fedgate's XEP-0050 ad-hoc commands with slixmpp.

Usage:
  /usr/bin/python3 test/tools/xmpp-adhoc.py --cafile CA.crt \\
      --jid admin@a.test --password PW --host 127.0.N.1 --port 15222 \\
      --service fedgate.a.test OP [OP ...]

Logs in over c2s (STARTTLS required, the server certificate verified
against --cafile for the JID's domain; no plaintext fallback), then runs
the operations in order on one session, with slixmpp's XEP-0050 plugin
(get_commands, send_command) and XEP-0004 forms:

  list                 disco#items on the commands node
  run:NODE             execute NODE (a new session)
  submit:VAR=V;VAR=V   submit the current form (next when the last answer
                       offered next, else complete)
  prev | cancel        that action on the current session
  ping:JID             an XEP-0199 ping (e.g. to make a route try a peer)
  sleep:SECONDS

Each operation prints "== OP" and then one line per fact, for the test to
grep:
  command NODE NAME            (list)
  status S / session ID        (a command answer)
  note TYPE TEXT
  field VAR TYPE VALUE[|VALUE...]   (VAR "-" for a fixed field)
  item VAR=VALUE;VAR=VALUE...  (one line per <item/> of a result form)
  error CONDITION SPECIFIC TEXT   (the iq came back as an error)
  pong / ping-error CONDITION TEXT
An error answer is output, not a failure; the exit status is 0 when every
operation got an answer, 1 when the session could not be set up or an
answer timed out, 2 on bad usage.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

NS_CMD = "http://jabber.org/protocol/commands"


def out(line):
    print(line, flush=True)


def describe_error(iq):
    err = iq["error"]
    specific = "-"
    for child in err.xml:
        if child.tag.startswith("{%s}" % NS_CMD):
            specific = child.tag.split("}", 1)[1]
    return "error %s %s %s" % (err["condition"], specific,
                               (err["text"] or "").replace("\n", " "))


class Admin(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid + "/adhoc", args.password)
        self.args = args
        self.ca_certs = Path(args.cafile)
        self.use_ipv6 = False
        self.whitespace_keepalive = False
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0050")
        self.register_plugin("xep_0199")
        self.done = asyncio.get_event_loop().create_future()
        self.closed = asyncio.get_event_loop().create_future()
        self.node = None
        self.sessionid = None
        self.offers_next = False
        self.add_event_handler("session_start", self.session_start)
        self.add_event_handler("failed_all_auth",
                               lambda _: self.finish(1, "authentication failed"))
        self.add_event_handler("connection_failed",
                               lambda e: self.finish(1, "connection failed: %s" % e))
        self.add_event_handler("ssl_invalid_chain",
                               lambda e: self.finish(1, "TLS: untrusted: %s" % e))
        self.add_event_handler("disconnected", self._disconnected)

    async def get_dns_records(self, domain, port=None):
        return [(self.boundjid.domain, self.args.host, self.args.port)]

    async def _handle_stream_features(self, features):
        if "starttls" not in self.features and \
                "starttls" not in features["features"]:
            self.finish(1, "server offered no STARTTLS; plaintext refused")
            return True
        return await super()._handle_stream_features(features)

    def _disconnected(self, reason):
        if not self.closed.done():
            self.closed.set_result(reason)
        self.finish(1, "disconnected: %s" % reason)

    def finish(self, rc, why=None):
        if self.done.done():
            return
        if why:
            out("fatal %s" % why)
        self.done.set_result(rc)

    def show_command(self, iq):
        cmd = iq["command"]
        self.node = cmd["node"]
        self.sessionid = cmd["sessionid"] or None
        out("status %s" % cmd["status"])
        if self.sessionid:
            out("session %s" % self.sessionid)
        self.offers_next = "next" in (cmd["actions"] or [])
        for note in cmd.xml.findall("{%s}note" % NS_CMD):
            out("note %s %s" % (note.get("type", "info"),
                                (note.text or "").replace("\n", " ")))
        for x in cmd.xml.findall("{jabber:x:data}x"):
            form = self["xep_0004"].stanza.Form(xml=x)
            # every field in document order, fixed ones (no var) as "-"
            for field in x.findall("{jabber:x:data}field"):
                values = [v.text or "" for v in
                          field.findall("{jabber:x:data}value")]
                out("field %s %s %s" % (field.get("var", "-"),
                                        field.get("type", "-"),
                                        "|".join(values)))
            for item in form["items"]:
                out("item " + ";".join("%s=%s" % (k, v)
                                       for k, v in item.items()))

    async def command(self, action, values=None):
        payload = None
        if values is not None:
            form = self["xep_0004"].make_form(ftype="submit")
            for var, value in values:
                form.add_field(var=var, value=value)
            payload = form
        try:
            iq = await self["xep_0050"].send_command(
                self.args.service, self.node, action=action, payload=payload,
                sessionid=self.sessionid, timeout=self.args.timeout)
            self.show_command(iq)
        except IqError as exc:
            out(describe_error(exc.iq))

    async def run_op(self, op):
        out("== %s" % op)
        if op == "list":
            try:
                iq = await self["xep_0050"].get_commands(
                    self.args.service, timeout=self.args.timeout)
                items = iq["disco_items"]["items"]
                for jid, node, name in items:
                    out("command %s %s" % (node, name))
                out("commands %d" % len(items))
            except IqError as exc:
                out(describe_error(exc.iq))
        elif op.startswith("run:"):
            self.node = op[4:]
            self.sessionid = None
            await self.command("execute")
        elif op.startswith("submit:"):
            values = []
            for kv in filter(None, op[7:].split(";")):
                var, _, value = kv.partition("=")
                values.append((var, value))
            await self.command("next" if self.offers_next else "complete",
                               values)
        elif op in ("prev", "cancel"):
            await self.command(op)
        elif op.startswith("ping:"):
            try:
                await self["xep_0199"].send_ping(op[5:],
                                                 timeout=self.args.timeout)
                out("pong")
            except IqError as exc:
                out("ping-error %s %s" % (exc.iq["error"]["condition"],
                                          exc.iq["error"]["text"]))
        elif op.startswith("sleep:"):
            await asyncio.sleep(float(op[6:]))
        else:
            out("fatal unknown operation %s" % op)
            return 2
        return 0

    async def session_start(self, _):
        ssl_obj = self.transport.get_extra_info("ssl_object") \
            if self.transport else None
        if ssl_obj is None:
            self.finish(1, "session without TLS; refused")
            return
        rc = 0
        try:
            for op in self.args.ops:
                rc = await self.run_op(op)
                if rc != 0:
                    break
        except IqTimeout:
            out("fatal timeout")
            rc = 1
        self.finish(rc)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--jid", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=5222)
    ap.add_argument("--service", required=True)
    ap.add_argument("--timeout", type=float, default=15.0)
    ap.add_argument("--debug", action="store_true")
    ap.add_argument("ops", nargs="+")
    args = ap.parse_args(argv)
    if not Path(args.cafile).is_file():
        ap.error("--cafile %s: no such file" % args.cafile)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR)
    client = Admin(args)
    client.connect(address=(args.host, args.port))
    loop = asyncio.get_event_loop()
    try:
        rc = loop.run_until_complete(
            asyncio.wait_for(client.done, args.timeout * (len(args.ops) + 2)))
    except asyncio.TimeoutError:
        out("fatal overall timeout")
        rc = 1
    client.disconnect(wait=2.0)
    try:
        loop.run_until_complete(asyncio.wait_for(client.closed, 5))
    except asyncio.TimeoutError:
        pass
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
