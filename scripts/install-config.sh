#!/bin/sh
# meson install step: puts the example configuration and the PAM service
# file under SYSCONFDIR ($1) only where the admin has none yet: a
# "meson install" on a configured host never overwrites them.
#
# With DESTDIR (meson makes it absolute before running this) the test is
# made inside that staging tree, never against the host's /etc.  A
# package build stages into an empty tree (debian/submitproxy), so the
# package always gets both files, and dh_installdeb registers every file
# under /etc as a conffile: from then on dpkg, not this script, keeps the
# admin's edits on upgrade (and asks when both sides changed).
set -eu
dest=${DESTDIR:-}
doc="$dest$MESON_INSTALL_PREFIX/share/doc/submitproxy"
sysconf="$dest$1"
mkdir -p "$sysconf/submitproxy" "$sysconf/pam.d"
# install -m 0644: the same mode whatever the umask of the build.
[ -e "$sysconf/submitproxy/submitproxy.conf" ] ||
	install -m 0644 "$doc/submitproxy.conf.example" "$sysconf/submitproxy/submitproxy.conf"
[ -e "$sysconf/pam.d/submitproxy" ] ||
	install -m 0644 "$doc/pam.d-submitproxy" "$sysconf/pam.d/submitproxy"
