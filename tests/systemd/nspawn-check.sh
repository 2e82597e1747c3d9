#!/bin/sh
# Runs the installed service under a real systemd: a Debian 12 container
# (debootstrap + systemd-nspawn, with its own network namespace: nothing
# listens outside it) gets submitproxy installed by meson, a real Postfix
# as the backend, a real user checked by pam_unix, and the shipped units
# with all their hardening.  Then, inside:
#   - submitproxy.service starts (Type=notify), and logins over implicit
#     TLS and STARTTLS deliver to Postfix's mailbox, with workers = 2;
#   - a wrong password is refused;
#   - systemctl reload (the unit's ExecReload) reloads;
#   - systemctl stop ends it at once (not at TimeoutStopSec);
#   - the two .socket units start it on first connection;
#   - with LoadCredential= the key is read from the credential.
# Not part of meson test (it needs root, the Debian mirror and about two
# minutes); run it after changing the units or the privilege handling:
#
#   sudo tests/systemd/nspawn-check.sh
#
# ROOTFS=DIR reuses a container tree made by an earlier run.  Exits 0 if
# every check passed.
set -eu
cd "$(dirname "$0")/../.."
src=$(pwd)
[ "$(id -u)" -eq 0 ] || { echo "nspawn-check: needs root" >&2; exit 2; }
for tool in debootstrap systemd-nspawn nsenter; do
	command -v $tool >/dev/null 2>&1 || {
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			debootstrap systemd-container util-linux >/dev/null
		break
	}
done
scripts/install-deps.sh

rootfs=${ROOTFS:-/var/tmp/submitproxy-nspawn}
if [ ! -x "$rootfs/usr/lib/systemd/systemd" ]; then
	rm -rf "$rootfs"
	debootstrap --variant=minbase \
		--include=systemd,systemd-sysv,dbus,libpam-modules,libpam-runtime,libuv1,libssl3,postfix,python3,passwd,openssl \
		bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
fi

build=$(mktemp -d /tmp/submitproxy-nspawn-build.XXXXXX)
trap 'rm -rf "$build"' EXIT
meson setup "$build" --prefix=/usr --sysconfdir=/etc -Dbuildtype=release >/dev/null
meson compile -C "$build" >/dev/null
DESTDIR="$rootfs" meson install -C "$build" >/dev/null
cp "$src/tests/systemd/inside.sh" "$src/tests/systemd/send.py" "$rootfs/root/"

log=$(mktemp /tmp/submitproxy-nspawn.XXXXXX.log)
systemd-nspawn -D "$rootfs" --register=no --keep-unit --private-network \
	--boot --console=pipe </dev/null >"$log" 2>&1 &
nspawn=$!
stop() {
	kill "$nspawn" 2>/dev/null || true
	wait "$nspawn" 2>/dev/null || true
	rm -rf "$build"
}
trap stop EXIT

# The container's init: the child of systemd-nspawn.
init=""
for _ in $(seq 100); do
	init=$(cat /proc/$nspawn/task/*/children 2>/dev/null | tr ' ' '\n' | grep -m1 . || true)
	[ -n "$init" ] && break
	sleep 0.1
done
[ -n "$init" ] || { cat "$log"; echo "nspawn-check: no container" >&2; exit 1; }
inside() { nsenter -t "$init" -m -u -i -n -p -- "$@"; }
for _ in $(seq 60); do
	state=$(inside systemctl is-system-running 2>/dev/null || true)
	case "$state" in running|degraded) break ;; esac
	sleep 1
done
echo "container $init: $state"
inside /bin/sh /root/inside.sh
