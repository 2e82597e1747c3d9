#!/bin/sh
# Installs the interop matrix's clients and MTAs, then runs it
# (tests/interop/matrix.py says what it checks).  Root; needs Debian's
# mirror the first time (the containers are kept under $INTEROP_ROOTS,
# default /var/tmp/sp-interop, for later runs).
#
#   sudo tests/interop/matrix.sh [-v] [Matrix.test_exim ...]
set -eu
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "matrix.sh: needs root" >&2; exit 2; }
roots=${INTEROP_ROOTS:-/var/tmp/sp-interop}
export DEBIAN_FRONTEND=noninteractive

scripts/install-deps.sh
need=""
for pkg in debootstrap systemd-container msmtp s-nail neomutt git-email \
	curl swaks libio-socket-ssl-perl libauthen-sasl-perl; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
# Node.js may come from elsewhere than Debian: only its commands count.
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
[ -z "$need" ] || apt-get install -y -q $need >/dev/null

mkdir -p "$roots"
if [ ! -d "$roots/node/node_modules/nodemailer" ]; then
	mkdir -p "$roots/node"
	(cd "$roots/node" && npm install --silent --no-audit --no-fund nodemailer)
fi
if [ ! -x "$roots/base/bin/sh" ]; then
	rm -rf "$roots/base"
	debootstrap --variant=minbase bookworm "$roots/base" \
		http://deb.debian.org/debian >/dev/null
fi
container() {	# NAME PACKAGES...
	name=$1
	shift
	[ -f "$roots/$name/.interop-ready" ] && return 0
	rm -rf "$roots/$name"
	cp -a "$roots/base" "$roots/$name"
	systemd-nspawn -q -D "$roots/$name" --register=no --keep-unit \
		env DEBIAN_FRONTEND=noninteractive sh -c \
		"apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $*" \
		>/dev/null
	touch "$roots/$name/.interop-ready"
}
container exim exim4-daemon-light
container opensmtpd opensmtpd
container sendmail sendmail-bin sendmail-cf m4 make

build=${BUILD:-build}
[ -d "$build" ] || meson setup "$build" >/dev/null
meson compile -C "$build" >/dev/null
SUBMITPROXY="$build/proxy/submitproxy" INTEROP_ROOTS="$roots" \
	exec python3 tests/interop/matrix.py "$@"
