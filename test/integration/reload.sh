#!/bin/bash
# reload.sh: SIGHUP reloads fedgate's configuration against a real Prosody.
#
# A peer service domain removed from the file loses its stream (Prosody
# then answers "Component unavailable" for it) while the other streams
# stay up; added back, its stream returns; a broken file is reported with
# file:line and the running configuration stays in force; SIGTERM then
# closes every stream cleanly and fedgate says so; SIGUSR1 logs the state
# of every stream.
. "$(dirname "$0")/lib.sh"
fg_init reload
FG_SERVER=prosody
fg_server_facts
fg_make_certs
prosody_setup
prosody_start
prosody_register "$FG_USER" "$FG_PASSWORD"

conf=$FG_TMP/gw/fedgate.conf
log=$FG_TMP/gw.log
fedgate_config "$conf"
fedgate_start gw "$conf"
fedgate_wait_ready gw 15
probe_ok ping "fedgate.$FG_DOMAIN"

note "phase: remove conference.b.test and reload"
cp "$conf" "$FG_TMP/full.conf"
sed -i '/services = /d' "$conf"
mark=$(log_mark "$log")
kill -HUP "$(fedgate_pid gw)"
wait_for_log "$log" 'upstream conference\.b\.test .*domain removed' 10 "$mark" ||
    fail "no 'domain removed' line for conference.b.test after SIGHUP"
wait_for_log "$log" 'configuration applied .*: 1 peer' 10 "$mark" ||
    fail "no 'configuration applied' line after SIGHUP"
# Prosody now has nobody attached for the service domain ...
probe_until 10 expect-error "$COND_UNATTACHED" ping conference.b.test
# ... while the other streams never went down.
[ "$(count_log "$log" 'upstream (b\.test|fedgate\.a\.test) .*(closed|failed)' "$mark")" = 0 ] ||
    fail "a stream that stayed in the configuration was disturbed by the reload"
probe_ok ping "fedgate.$FG_DOMAIN"

note "phase: add it back"
cp "$FG_TMP/full.conf" "$conf"
mark=$(log_mark "$log")
kill -HUP "$(fedgate_pid gw)"
wait_for_log "$log" 'upstream conference\.b\.test [^ ]+: stream ready' 10 "$mark" ||
    fail "conference.b.test's stream did not come back after SIGHUP"

note "phase: a broken file keeps the running configuration"
printf 'this is not libconfig\n' >>"$conf"
mark=$(log_mark "$log")
kill -HUP "$(fedgate_pid gw)"
wait_for_log "$log" 'reload of .* failed; keeping the running configuration' 10 "$mark" ||
    fail "no reload failure line for a broken file"
wait_for_log "$log" "fedgate\\.conf:[0-9]+: " 5 "$mark" ||
    fail "the reload failure does not name file and line"
fedgate_alive gw || fail "fedgate died on a broken configuration"
probe_ok ping "fedgate.$FG_DOMAIN"

note "phase: SIGUSR1 logs the state of every stream"
mark=$(log_mark "$log")
kill -USR1 "$(fedgate_pid gw)"
wait_for_log "$log" 'status: upstream fedgate\.a\.test: ready' 5 "$mark" ||
    fail "SIGUSR1 did not log the service stream as ready"
wait_for_log "$log" 'status: upstream conference\.b\.test: ready' 5 "$mark" ||
    fail "SIGUSR1 did not list conference.b.test"

note "phase: SIGTERM closes the streams cleanly"
fedgate_stop gw
wait_for_log "$log" 'all streams closed; exiting|all home-server streams closed' 5 ||
    fail "fedgate did not report a clean shutdown"
prosody_stop
fg_finish
