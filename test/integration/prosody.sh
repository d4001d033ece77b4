#!/bin/bash
# prosody.sh: fedgate attached to a private Prosody 0.12 (s2s disabled).
#
# Without fedgate: a real client logs in over verified TLS, pings and discos
# a.test, and gets the server's refusals for the component domains and an
# unknown domain. With fedgate: its service JID answers ping, disco#info
# (gateway identity) and version; after a Prosody restart fedgate
# reconnects and answers again; the same with fedgate's sockets above fd
# 1023; a wrong component secret gives a clear not-authorized log line,
# bounded retries and a live process. See lib.sh for the harness.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init prosody
fg_home_scenario prosody
fg_finish
