#!/bin/sh
# Installs what the tests need, builds submitproxy twice (warnings as
# errors; then with AddressSanitizer + UBSan) and runs the whole suite on
# both builds; as root, also builds and checks the Debian package.  Exits
# non-zero on any failure.
#
#   scripts/test.sh            everything
#   scripts/test.sh --no-asan  only the plain build
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh

asan=yes
[ "${1:-}" = "--no-asan" ] && asan=no

run_suite() {
	dir=$1
	shift
	if [ -d "$dir" ]; then
		meson setup --reconfigure "$dir" "$@"
	else
		meson setup "$dir" "$@"
	fi
	meson compile -C "$dir"
	meson test -C "$dir" --print-errorlogs --num-processes 2
}

run_suite build -Dwerror=true
if [ "$asan" = yes ]; then
	# detect_leaks: every test also proves the loop closes cleanly.
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		run_suite build-asan -Dwerror=true -Db_sanitize=address,undefined \
			-Db_lundef=false -Dbuildtype=debug
fi
# The Debian package: built from HEAD, lintian, installed into a fresh
# bookworm chroot (scripts/package-check.sh).  A step here, not a meson
# test: it checks the committed tree's packaging rather than a build
# directory, so it runs once and not for each of the two builds; it
# needs root, debootstrap and the Debian mirror; a minute or two, a
# fresh debootstrap included (the limit: 15).
if [ "$(id -u)" -eq 0 ]; then
	timeout 900 scripts/package-check.sh
else
	echo "package check skipped: it needs root (sudo scripts/package-check.sh)"
fi
echo "all test suites passed"
