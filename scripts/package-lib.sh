# Shell functions shared by scripts/package-check.sh and
# tests/systemd/nspawn-check.sh (sourced, not run): building the Debian
# package from a clean copy of the tree, and running commands in a Debian
# tree made by debootstrap.  Both need root.

# package_build OUTDIR [--working-tree]
#   Builds the package with "dpkg-buildpackage -us -uc -b" in a temporary
#   copy of the committed tree (git archive HEAD), so no build output ever
#   lands in the checkout.  --working-tree copies the tracked and the
#   untracked, not ignored, files as they are now instead (to try a change
#   before committing it); outside a git checkout (a release tarball) the
#   tree is copied without build directories.  Leaves the .deb files, the
#   .changes and .buildinfo and build.log (the whole build's output) in
#   OUTDIR, and the package's path in $package_deb.
package_build() {
	pb_out=$1
	pb_tree=${2:-}
	pb_src=$(pwd)
	mkdir -p "$pb_out"
	pb_out=$(cd "$pb_out" && pwd)
	rm -f "$pb_out"/submitproxy_*.deb "$pb_out"/submitproxy-dbgsym_*.deb \
		"$pb_out"/submitproxy_*.changes "$pb_out"/submitproxy_*.buildinfo
	pb_work=$(mktemp -d /tmp/submitproxy-deb.XXXXXX)
	mkdir "$pb_work/submitproxy"
	if ! git -C "$pb_src" rev-parse --git-dir >/dev/null 2>&1; then
		tar -C "$pb_src" --exclude='./build*' --exclude=./demo \
			--exclude=./debian/submitproxy --exclude=./debian/.debhelper \
			-cf - . | tar -xf - -C "$pb_work/submitproxy"
	elif [ "$pb_tree" = --working-tree ]; then
		(cd "$pb_src" && git ls-files -z --cached --others --exclude-standard |
			tar --null -T - -cf -) | tar -xf - -C "$pb_work/submitproxy"
	else
		git -C "$pb_src" archive --format=tar HEAD | tar -xf - -C "$pb_work/submitproxy"
	fi
	# dpkg-buildpackage checks the Build-Depends itself (and names what
	# is missing).  Rules-Requires-Root: no, so no fakeroot is needed.
	if ! (cd "$pb_work/submitproxy" && timeout 600 dpkg-buildpackage -us -uc -b) \
		>"$pb_out/build.log" 2>&1; then
		tail -n 40 "$pb_out/build.log" >&2
		echo "package_build: dpkg-buildpackage failed; the whole log: $pb_out/build.log" >&2
		rm -rf "$pb_work"
		return 1
	fi
	mv "$pb_work"/*.deb "$pb_work"/*.changes "$pb_work"/*.buildinfo "$pb_out/"
	rm -rf "$pb_work"
	package_deb=$(ls "$pb_out"/submitproxy_*_*.deb)
}

# package_chroot SECONDS ROOT COMMAND [ARG...]
#   Runs COMMAND, killed after SECONDS, chrooted into ROOT with /proc, /dev and the host's
#   resolv.conf (apt reaches the Debian mirror), inside a private mount
#   namespace: the mounts exist only for COMMAND and vanish with it, even
#   if it is killed, and nothing is mounted or written on the host outside
#   ROOT.  ROOT's own resolv.conf is replaced only if it is not a plain
#   file (a symlink would point out of ROOT).
package_chroot() {
	pc_seconds=$1
	pc_root=$2
	shift 2
	if [ -L "$pc_root/etc/resolv.conf" ] || [ ! -f "$pc_root/etc/resolv.conf" ]; then
		rm -f "$pc_root/etc/resolv.conf"
		: >"$pc_root/etc/resolv.conf"
	fi
	timeout "$pc_seconds" unshare --mount --propagation private -- /bin/sh -eu -c '
		root=$1
		shift
		mount -t proc proc "$root/proc"
		mount --rbind /dev "$root/dev"
		mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
		exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
	' package_chroot "$pc_root" "$@"
}

# package_chroot_install SECONDS ROOT DEB
#   Installs the package file DEB into the tree ROOT with apt, which takes
#   the dependencies from the mirror (apt-get update first when the lists
#   are missing or out of date).  apt's output goes to stdout.
package_chroot_install() {
	pi_deb=$(basename "$3")
	cp "$3" "$2/root/$pi_deb"
	package_chroot "$1" "$2" /bin/sh -c '
		deb=/root/$1
		install() { apt-get install -y -q --no-install-recommends "$deb"; }
		install || { apt-get update -q && install; }' package_chroot_install "$pi_deb"
}
