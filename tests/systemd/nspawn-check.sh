#!/bin/sh
# Runs the installed service under a real systemd: a Debian 12 container
# (debootstrap + systemd-nspawn, with its own network namespace: nothing
# listens outside it) gets the Debian package of the working tree
# (scripts/package-lib.sh builds it, apt installs it with its
# dependencies before the container boots), a real Postfix as the
# backend, a real user checked by pam_unix, and the shipped units with
# all their hardening.  Then, inside:
#   - the package made the user and, without a certificate, left the
#     service disabled and stopped;
#   - installed anew where a certificate exists, it enables and starts
#     submitproxy.service (Type=notify); an upgrade restarts it on the new
#     binary, but leaves it running when its configuration fails
#     "submitproxy -t";
#   - logins over implicit TLS and STARTTLS deliver to Postfix's mailbox,
#     with workers = 2;
#   - a wrong password is refused;
#   - systemctl reload (the unit's ExecReload) reloads;
#   - systemctl stop ends it at once (not at TimeoutStopSec);
#   - the two .socket units start it on first connection;
#   - with LoadCredential= the key is read from the credential;
#   - removing the package stops the service.
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
. scripts/package-lib.sh

rootfs=${ROOTFS:-/var/tmp/submitproxy-nspawn}
if [ ! -x "$rootfs/usr/lib/systemd/systemd" ]; then
	rm -rf "$rootfs"
	debootstrap --variant=minbase \
		--include=systemd,systemd-sysv,dbus,libpam-modules,libpam-runtime,libuv1,libssl3,postfix,python3,passwd,openssl \
		bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
fi

build=$(mktemp -d /tmp/submitproxy-nspawn-build.XXXXXX)
trap 'rm -rf "$build"' EXIT
package_build "$build" --working-tree
# A kept ROOTFS: the last run's package goes first, with the certificate
# inside.sh made (a purge keeps it: the package would then find it and
# start at once), and so do the two files an older "meson install" put
# there, owned by no package (dpkg would keep them in place of the
# package's conffiles).
package_chroot 120 "$rootfs" /bin/sh -c '
	if dpkg -s submitproxy >/dev/null 2>&1; then dpkg --purge submitproxy; fi
	rm -f /etc/submitproxy/cert.pem /etc/submitproxy/key.pem
	for f in /etc/submitproxy/submitproxy.conf /etc/pam.d/submitproxy; do
		if [ -e $f ] && ! dpkg -S $f >/dev/null 2>&1; then rm -f $f; fi
	done' >/dev/null
package_chroot_install 600 "$rootfs" "$package_deb" >"$build/apt.log" 2>&1 ||
	{ cat "$build/apt.log"; echo "nspawn-check: the package did not install" >&2; exit 1; }
# The postinst's note (no certificate yet), for inside.sh to check.
cp "$build/apt.log" "$rootfs/root/apt.log"
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
