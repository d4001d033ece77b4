#!/bin/bash
# gw-prosody-ejabberd-s2s.sh: gateway topology, end to end with real clients:
#   prosody a.test — fedgate A ═ unmodified ejabberd b.test (its own s2s on)
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
fg_init gw-prosody-ejabberd-s2s 115

gw_run_all prosody s2s-ejabberd
fg_finish
