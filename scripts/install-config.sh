#!/bin/sh
# meson install step: puts the example configuration and the PAM service
# file in place only where the admin has none yet (never overwrites).
set -eu
dest=${DESTDIR:-}
doc="$dest$MESON_INSTALL_PREFIX/share/doc/submitproxy"
sysconf="$dest$1"
mkdir -p "$sysconf/submitproxy" "$sysconf/pam.d"
[ -e "$sysconf/submitproxy/submitproxy.conf" ] ||
	cp "$doc/submitproxy.conf.example" "$sysconf/submitproxy/submitproxy.conf"
[ -e "$sysconf/pam.d/submitproxy" ] ||
	cp "$doc/pam.d-submitproxy" "$sysconf/pam.d/submitproxy"
