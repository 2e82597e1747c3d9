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
#
# scripts/demo.sh --shared runs two instances instead (the second on
# 127.0.0.1:2526 and 127.0.0.1:4651) sharing one redis-server on a Unix
# socket under demo/ ([policy] store), with user_recipients_per_hour = 3:
# a limit reached through one instance refuses on the other.
set -eu
cd "$(dirname "$0")/.."
shared=no
case "${1:-}" in
--shared) shared=yes ;;
"") ;;
*)
	echo "usage: $0 [--shared]" >&2
	exit 2
	;;
esac
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
# libpam reads the fallback service "other" along with every service,
# from pam_wrapper's copy of this directory as from /etc/pam.d; without
# one, each login logs "PWRAP_ERROR ... _pam_init_handlers: no default
# config other".  Deny everything, as Debian's /etc/pam.d/other does
# (the module by its full path, as pam_matrix is).
deny=/usr/lib/x86_64-linux-gnu/security/pam_deny.so
cat > "$demo/pam/other" <<PAM
auth required $deny
account required $deny
password required $deny
session required $deny
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
pids=$sink_pid
trap 'kill $pids 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

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

[metrics]
address = 127.0.0.1:9465
CONF

if [ "$shared" = no ]; then
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

then look in $demo/mail/.  What it counted (Prometheus format), and
its health check:

  curl -s http://127.0.0.1:9465/metrics | grep -v '^#'
  curl -s http://127.0.0.1:9465/healthz

Ctrl-C stops the demo.

MSG
LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libpam_wrapper.so PAM_WRAPPER=1 \
PAM_WRAPPER_SERVICE_DIR="$demo/pam" \
	build/proxy/submitproxy -c "$demo/submitproxy.conf"
exit
fi

# --shared: one Redis, two instances.  The socket is open to every local
# user (the network process runs as $demo_user): a loopback demo only; in
# production use unixsocketperm 770 and the redis group (README).
rm -f "$demo/redis.sock"
redis-server --port 0 --unixsocket "$demo/redis.sock" --unixsocketperm 777 \
	--save '' --appendonly no --dir "$demo" \
	--logfile "$demo/redis.log" &
pids="$pids $!"
i=0
while [ ! -S "$demo/redis.sock" ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -S "$demo/redis.sock" ] || { echo "redis-server did not start: see $demo/redis.log" >&2; exit 1; }

for n in 2; do
	sed -e "s/127.0.0.1:2525/127.0.0.1:2526/" -e "s/127.0.0.1:4650/127.0.0.1:4651/" \
		-e "s/127.0.0.1:9465/127.0.0.1:9466/" \
		"$demo/submitproxy.conf" > "$demo/submitproxy-$n.conf"
done
cp "$demo/submitproxy.conf" "$demo/submitproxy-1.conf"
for n in 1 2; do
	cat >> "$demo/submitproxy-$n.conf" <<CONF

[limits]
user_recipients_per_hour = 3

[policy]
store = redis+unix://$demo/redis.sock
CONF
	: > "$demo/instance-$n.log"
	LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libpam_wrapper.so PAM_WRAPPER=1 \
	PAM_WRAPPER_SERVICE_DIR="$demo/pam" \
		build/proxy/submitproxy -c "$demo/submitproxy-$n.conf" \
		2> "$demo/instance-$n.log" &
	pids="$pids $!"
done

cat <<MSG

submitproxy demo, two instances sharing one Redis
  instance 1: STARTTLS on 127.0.0.1:2525, implicit TLS on 127.0.0.1:4650
  instance 2: STARTTLS on 127.0.0.1:2526, implicit TLS on 127.0.0.1:4651
  both: [policy] store = redis+unix://$demo/redis.sock,
        [limits] user_recipients_per_hour = 3
  login: demo / demo-password; backend: smtp-sink, mail in $demo/mail/
  logs: $demo/instance-1.log and $demo/instance-2.log, shown below
        as [1] and [2]; metrics: http://127.0.0.1:9465/metrics and :9466

From another terminal, three recipients through instance 1:

  swaks --server 127.0.0.1:2525 --tls --auth PLAIN \\
        --auth-user demo --auth-password demo-password \\
        --from demo@example.com --to a@example.com,b@example.com,c@example.com

then one more through instance 2, refused with 451 4.7.1:

  swaks --server 127.0.0.1:2526 --tls --auth PLAIN \\
        --auth-user demo --auth-password demo-password \\
        --from demo@example.com --to d@example.com

and the shared counters: redis-cli -s $demo/redis.sock --scan
(each with its TTL: redis-cli -s $demo/redis.sock pttl submitproxy:rh:demo).
Ctrl-C stops the demo.

MSG
# Both logs on this terminal, each line marked [1] or [2]; each tail stops
# with this script (--pid).  In the background, so that a SIGTERM to this
# script runs its trap at once (a shell waits for a foreground command
# before its traps).
for n in 1 2; do
	tail -n +1 -F --pid=$$ "$demo/instance-$n.log" | sed -u "s/^/[$n] /" &
	pids="$pids $!"
done
wait
