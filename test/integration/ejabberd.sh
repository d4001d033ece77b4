#!/bin/bash
# ejabberd.sh: fedgate attached to a private ejabberd 23.01 (s2s denied).
#
# The same scenario as prosody.sh (see there and lib.sh) against ejabberd,
# whose refusals differ: every unattached or unknown domain is forbidden.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init ejabberd
fg_home_scenario ejabberd
fg_finish
