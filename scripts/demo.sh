#!/bin/sh
# A complete local demo of submitproxy on this machine, touching none of
# its accounts or mail setup:
#   - installs the packages and builds;
#   - makes a self-signed certificate for "localhost" under demo/;
#   - starts Postfix's smtp-sink on 127.0.0.1:10025 as the backend MTA (it
#     accepts every message and saves it under demo/mail/);
#   - creates a test login demo / demo-password with pam_wrapper and
#     pam_matrix (a PAM stack backed by a file, no system account);
#   - runs submitproxy in the foreground on 127.0.0.1:2525 (STARTTLS) and
#     127.0.0.1:4650 (implicit TLS).  Ctrl-C stops everything.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -d build ] || meson setup build
meson compile -C build

demo=$(pwd)/demo
mkdir -p "$demo/mail" "$demo/pam"
backend_port=10025

if [ ! -f "$demo/cert.pem" ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 \
		-subj /CN=localhost -addext subjectAltName=DNS:localhost \
		-keyout "$demo/key.pem" -out "$demo/cert.pem" 2>/dev/null
fi

# The test login, checked by real PAM through pam_wrapper.
matrix=/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so
echo "demo:demo-password:submitproxy" > "$demo/pam/passdb"
cat > "$demo/pam/submitproxy" <<PAM
auth required $matrix passdb=$demo/pam/passdb
account required $matrix passdb=$demo/pam/passdb
PAM

# The backend: smtp-sink on loopback keeps every message it is given.
sinkuser=""
if [ "$(id -u)" -eq 0 ]; then
	sinkuser="-u nobody"
	chmod 777 "$demo/mail"
fi
/usr/sbin/smtp-sink $sinkuser -d "$demo/mail/%Y%m%d%H%M%S." \
	127.0.0.1:$backend_port 100 &
sink_pid=$!
trap 'kill $sink_pid 2>/dev/null || true' EXIT INT TERM

# Started as root, the network process drops to [server] user; the demo
# uses "nobody" then (the real set-up creates a "submitproxy" user).
demo_user=$(id -un)
[ "$(id -u)" -eq 0 ] && demo_user=nobody

cat > "$demo/submitproxy.conf" <<CONF
# Written by scripts/demo.sh.
[server]
hostname = localhost
user = $demo_user
log_level = info

[listener submission]
address = 127.0.0.1:2525
mode = starttls

[listener submissions]
address = 127.0.0.1:4650
mode = implicit-tls

[tls]
certificate = $demo/cert.pem
key = $demo/key.pem

[auth]
pam_service = submitproxy

[backend]
address = 127.0.0.1:$backend_port
CONF

cat <<MSG

submitproxy demo
  STARTTLS on 127.0.0.1:2525, implicit TLS on 127.0.0.1:4650
  login: demo / demo-password
  backend: smtp-sink on 127.0.0.1:$backend_port, messages saved in $demo/mail/

Send a test mail from another terminal:

  swaks --server 127.0.0.1:2525 --tls --auth PLAIN \\
        --auth-user demo --auth-password demo-password \\
        --from demo@example.com --to you@example.com

  swaks --server 127.0.0.1:4650 --tlsc --auth LOGIN \\
        --auth-user demo --auth-password demo-password \\
        --from demo@example.com --to you@example.com

then look in $demo/mail/.  Ctrl-C stops the demo.

MSG
LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libpam_wrapper.so PAM_WRAPPER=1 \
PAM_WRAPPER_SERVICE_DIR="$demo/pam" \
	build/proxy/submitproxy -c "$demo/submitproxy.conf"
