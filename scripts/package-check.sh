#!/bin/sh
# Builds the Debian package from the committed tree, runs lintian on it
# and installs it into a fresh Debian 12 chroot, where apt resolves its
# dependencies from the mirror.  Then, in the chroot:
#   - every file is where it belongs (binary, man pages, units, sysusers
#     snippet, PAM service, example configuration, fail2ban files);
#   - the postinst made the user through systemd-sysusers;
#   - the PAM service and the configuration are registered conffiles;
#   - submitproxy -V runs; submitproxy -t fails on the shipped
#     configuration and names the missing certificate;
#   - the postinst neither started nor enabled anything, and said why;
#   - purge removes the conffiles and keeps the admin's certificate;
#   - the postinst's other branch: installed anew where the certificate
#     is already in place, it enables submitproxy.service (not the
#     sockets), and purge removes that again.
# No systemd runs in a chroot, so starting itself is left to
# tests/systemd/nspawn-check.sh; here the postinst's decision is read
# from what it prints and the enablement symlinks it makes.
#
#   sudo scripts/package-check.sh [--working-tree]
#
# --working-tree packages the checkout as it is instead of HEAD (see
# package_build in scripts/package-lib.sh).  Needs root and the Debian
# mirror; the debootstrap base is cached in /var/tmp/submitproxy-pkgcheck
# (PKGCHECK_BASE=DIR), each run works on a copy removed at exit.  OUT=DIR
# keeps the built package there.  The host's own configuration is never
# touched (chroot mounts live in a private mount namespace).  Every step
# has a time limit; about 40 s with the base cached, 80 s with a fresh
# debootstrap (two cores, a fast mirror).  Exits 0 if lintian found no error and every check passed.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "package-check: needs root" >&2; exit 2; }
tree=""
case "${1:-}" in
--working-tree) tree=--working-tree ;;
"") ;;
*)
	echo "usage: $0 [--working-tree]" >&2
	exit 2
	;;
esac
scripts/install-deps.sh
. scripts/package-lib.sh
start=$(date +%s)

base=${PKGCHECK_BASE:-/var/tmp/submitproxy-pkgcheck}
root=""
out=""
cleanup() {
	[ -z "$root" ] || rm -rf "$root"
	[ -z "$out" ] || [ -n "${OUT:-}" ] || rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

out=${OUT:-$(mktemp -d /tmp/submitproxy-pkgcheck-out.XXXXXX)}
echo "package-check: building the package${tree:+ (working tree)}"
package_build "$out" $tree
echo "package-check: built $package_deb"

echo "package-check: lintian"
# --fail-on error: warnings are printed, the README lists the ones left.
lintian_ok=yes
timeout 300 lintian --info --display-info --fail-on error "$out"/submitproxy_*.changes ||
	lintian_ok=no

# The base: minbase plus the package lists, made once.  The stamp is
# written last, so an interrupted debootstrap is started over.
if [ ! -f "$base/.submitproxy-base" ]; then
	echo "package-check: debootstrap into $base (once)"
	rm -rf "$base"
	timeout 600 debootstrap --variant=minbase bookworm "$base" \
		http://deb.debian.org/debian >/dev/null
	package_chroot 300 "$base" apt-get update -q >/dev/null
	touch "$base/.submitproxy-base"
fi
root=$(mktemp -d /var/tmp/submitproxy-pkgcheck-root.XXXXXX)
cp -a "$base/." "$root/"
# No daemon a dependency brings may start in the chroot (the chroot's
# own file, removed with it).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp "$package_deb" "$root/root/"
# A certificate for the postinst's second branch, made with the host's
# openssl (minbase has none); put in place only after the installation.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-days 2 -subj /CN=mail.example.test -keyout "$root/root/key.pem" \
	-out "$root/root/cert.pem" 2>/dev/null

cat >"$root/root/check.sh" <<'CHECK'
#!/bin/sh
# Run in the chroot by scripts/package-check.sh.
set -u
deb=$1
failed=0
check() {
	what=$1
	shift
	if "$@" >/dev/null 2>&1; then echo "ok - $what"; else echo "not ok - $what"; failed=1; fi
}
install_deb() {
	apt-get install -y -q --no-install-recommends "/root/$deb" >/root/apt.log 2>&1
}
# Lists older than the mirror's packages: update, once.
install_deb || { apt-get update -q >/dev/null 2>&1 && install_deb; }
status=$?
cat /root/apt.log
check "apt-get install ./$deb resolves the dependencies and installs" [ $status -eq 0 ]

for f in /usr/sbin/submitproxy /usr/share/man/man8/submitproxy.8.gz \
	/usr/share/man/man5/submitproxy.conf.5.gz \
	/lib/systemd/system/submitproxy.service \
	/lib/systemd/system/submitproxy@.service \
	/lib/systemd/system/submitproxy-submission.socket \
	/lib/systemd/system/submitproxy-submissions.socket \
	/usr/lib/sysusers.d/submitproxy.conf /etc/pam.d/submitproxy \
	/etc/submitproxy/submitproxy.conf \
	/usr/share/doc/submitproxy/fail2ban-filter.conf \
	/usr/share/doc/submitproxy/fail2ban-jail.conf; do
	check "$f is installed" sh -c "dpkg -S '$f' | grep -q '^submitproxy:'"
done
check "the unit runs /usr/sbin/submitproxy on /etc/submitproxy/submitproxy.conf" \
	grep -qx 'ExecStart=/usr/sbin/submitproxy -c /etc/submitproxy/submitproxy.conf' \
	/lib/systemd/system/submitproxy.service
check "the PAM service is the shipped one" \
	cmp /etc/pam.d/submitproxy /usr/share/doc/submitproxy/pam.d-submitproxy
# The sysusers snippet's fields: a user adduser would make differently.
check "systemd-sysusers made the user submitproxy (home /nonexistent, nologin)" \
	sh -c "getent passwd submitproxy | grep -q ':/nonexistent:/usr/sbin/nologin\$'"
check "and its group" getent group submitproxy
check "the postinst calls systemd-sysusers" \
	grep -q 'systemd-sysusers' /var/lib/dpkg/info/submitproxy.postinst
dpkg-query --showformat='${Conffiles}\n' --show submitproxy >/root/conffiles
sed 's/^/# conffile:/' /root/conffiles
check "/etc/submitproxy/submitproxy.conf is a conffile" \
	grep -q '^ /etc/submitproxy/submitproxy.conf [0-9a-f]\{32\}$' /root/conffiles
check "/etc/pam.d/submitproxy is a conffile" \
	grep -q '^ /etc/pam.d/submitproxy [0-9a-f]\{32\}$' /root/conffiles
version=$(dpkg-query --showformat='${Version}' --show submitproxy)
submitproxy -V >/root/version 2>&1
check "submitproxy -V prints the version ($version)" grep -qx "submitproxy $version" /root/version
submitproxy -t -c /etc/submitproxy/submitproxy.conf >/root/t.log 2>&1
t_status=$?
sed 's/^/# submitproxy -t: /' /root/t.log
check "submitproxy -t on the shipped configuration fails" [ $t_status -ne 0 ]
check "naming the missing certificate" \
	grep -q '^/etc/submitproxy/cert.pem: .*No such file' /root/t.log
check "the postinst said it started nothing, and why" \
	sh -c "grep -q 'submitproxy.service was not enabled or started' /root/apt.log &&
		grep -q 'cert.pem: cannot load certificate' /root/apt.log &&
		grep -q 'systemctl enable --now submitproxy.service' /root/apt.log"
check "and enabled nothing" sh -c '! ls /etc/systemd/system/*.wants/submitproxy* 2>/dev/null'

# The certificate arrives: the shipped configuration now passes.
cp /root/cert.pem /root/key.pem /etc/submitproxy/
check "with the certificate in place submitproxy -t passes" \
	submitproxy -t -c /etc/submitproxy/submitproxy.conf
check "apt-get purge" apt-get purge -y -q submitproxy
check "purge removes the conffiles" sh -c \
	'[ ! -e /etc/submitproxy/submitproxy.conf ] && [ ! -e /etc/pam.d/submitproxy ]'
check "and keeps the admin's certificate and key" \
	test -f /etc/submitproxy/cert.pem -a -f /etc/submitproxy/key.pem

# A new installation onto a system that has the certificate already: the
# postinst's check passes, and it enables submitproxy.service (and would
# start it under a running systemd).
install_deb
status=$?
cat /root/apt.log
check "a new installation with the certificate there" [ $status -eq 0 ]
check "says it enables submitproxy.service" \
	grep -q 'passes "submitproxy -t": enabling submitproxy.service' /root/apt.log
check "and enables it (multi-user.target.wants)" \
	test -L /etc/systemd/system/multi-user.target.wants/submitproxy.service
check "but not the .socket units" sh -c '! ls /etc/systemd/system/sockets.target.wants/submitproxy* 2>/dev/null'
check "purge again" apt-get purge -y -q submitproxy
check "removes the enablement symlink" \
	test ! -e /etc/systemd/system/multi-user.target.wants/submitproxy.service
exit $failed
CHECK

echo "package-check: installing into a fresh bookworm chroot"
checks_ok=yes
package_chroot 600 "$root" /bin/sh /root/check.sh "$(basename "$package_deb")" ||
	checks_ok=no
echo "package-check: $(($(date +%s) - start)) s"
[ "$lintian_ok" = yes ] || { echo "package-check: lintian reported errors" >&2; exit 1; }
[ "$checks_ok" = yes ] || { echo "package-check: a check failed" >&2; exit 1; }
echo "package-check: all checks passed"
