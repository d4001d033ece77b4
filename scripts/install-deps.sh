#!/bin/sh
# install-deps.sh: install every build and test dependency of fedgate on Debian 12.
# Idempotent: packages already present are left alone. Needs root (or sudo).
# The distribution's own prosody/ejabberd/unbound services are stopped and kept
# from starting: fedgate's tests run private instances on loopback addresses.
set -eu

PKGS="build-essential autoconf automake pkg-config git ca-certificates
 libexpat1-dev libssl-dev libunbound-dev libsqlite3-dev check libsubunit-dev
 libstrophe-dev libconfig-dev libidn2-dev libevent-dev
 clang clang-format valgrind openssl
 prosody ejabberd unbound python3 python3-slixmpp procps iproute2 psmisc"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
else
    echo "install-deps: installing:$missing"
    # Keep package scripts from starting system daemons on shared ports.
    policy=/usr/sbin/policy-rc.d
    created_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        created_policy=yes
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $missing
    if [ "$created_policy" = yes ]; then $SUDO rm -f "$policy"; fi
fi

# Stop system instances that an earlier install may have started.
for svc in prosody ejabberd unbound; do
    if [ -x "/etc/init.d/$svc" ]; then
        $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done
exit 0
