#!/bin/sh
# Installs what the tests need, builds submitproxy twice (warnings as
# errors; then with AddressSanitizer + UBSan) and runs the whole suite on
# both builds.  Exits non-zero on any failure.
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
echo "all test suites passed"
