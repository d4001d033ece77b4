#!/bin/bash
# gw-ejabberd-prosody-s2s.sh: gateway topology, end to end with real clients:
#   ejabberd a.test — fedgate A ═ unmodified prosody b.test (its own s2s on)
# plus c.test (Prosody, s2s on, nobody's peer). Addresses, servers and the
# step lists: gw-lib.sh. Covers subscription both ways, presence updates
# and probes after reconnects, every message type with thread, chat state
# and receipts, groupchat/nobody bounces, iq both ways with the real
# servers' errors intact, 100 KiB and non-ASCII bodies, offline storage,
# unsubscribe and cancel, and the border policy both ways.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=test/integration/gw-lib.sh
. "$(dirname "$0")/gw-lib.sh"
fg_init gw-ejabberd-prosody-s2s 115

gw_run_all ejabberd s2s-prosody
fg_finish
