#!/bin/sh
# Brings up a complete local demo of submitproxy on this machine:
# installs the packages, builds, starts a local backend MTA (Postfix's
# smtp-sink, which accepts and discards mail, saving each message under
# demo/mail/), and runs submitproxy in the foreground on 127.0.0.1 with the
# configuration written to demo/submitproxy.conf.  Ctrl-C stops both.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -d build ] || meson setup build
meson compile -C build

demo=$(pwd)/demo
mkdir -p "$demo/mail"
backend_port=10025

# The backend: smtp-sink listens on loopback only and keeps every message.
sink=/usr/sbin/smtp-sink
sinkuser=""
[ "$(id -u)" -eq 0 ] && sinkuser="-u nobody" && chmod 777 "$demo/mail"
$sink $sinkuser -c -d "$demo/mail/%Y%m%d%H/%M." 127.0.0.1:$backend_port 100 &
sink_pid=$!
trap 'kill $sink_pid 2>/dev/null || true' EXIT INT TERM

cat > "$demo/submitproxy.conf" <<CONF
# Written by scripts/demo.sh.
[server]
hostname = localhost
user = $(id -un)
log_level = info

[listener demo]
address = 127.0.0.1:2525
mode = plain
require_tls = no

[backend]
address = 127.0.0.1:$backend_port
CONF

cat <<MSG

submitproxy demo: backend smtp-sink on 127.0.0.1:$backend_port, mail saved in $demo/mail
Try it from another terminal:

  swaks --server 127.0.0.1:2525 --quit-after EHLO
  swaks --server 127.0.0.1:2525 --from me@example.com --to you@example.com

(MAIL before AUTH is refused with 530: authentication arrives with the
auth helper.)  Ctrl-C stops the demo.

MSG
build/proxy/submitproxy -c "$demo/submitproxy.conf"
