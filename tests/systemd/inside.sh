#!/bin/sh
# Run inside the container by nspawn-check.sh: sets up, then checks.  Each
# check prints "ok - what" or "not ok - what"; exits 1 if any failed.
set -u
failed=0
check() {
	what=$1
	shift
	if "$@" >/dev/null 2>&1; then echo "ok - $what"; else echo "not ok - $what"; failed=1; fi
}
journal() { journalctl -u submitproxy.service --no-pager --since "@$1"; }

main_pid() { systemctl show -p MainPID --value submitproxy.service; }
# dpkg -i as an upgrade: the same version again, postinst "configure 0.1.0".
reinstall() { dpkg -i /root/submitproxy_*_*.deb >/root/dpkg.log 2>&1; }

# The package was installed (by nspawn-check.sh, before boot) onto a
# system without the certificate its configuration names.
check "the package made the user (systemd-sysusers)" id submitproxy
check "the package said it did not start the service, and why" \
	grep -q 'submitproxy.service was not enabled or started' /root/apt.log
check "and left it disabled" sh -c '! systemctl is-enabled --quiet submitproxy.service'
check "and stopped" sh -c '! systemctl is-active --quiet submitproxy.service'

id alice >/dev/null 2>&1 || { useradd -m alice; echo 'alice:s3cret-Pw' | chpasswd; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=mail.example.test -keyout /etc/submitproxy/key.pem \
	-out /etc/submitproxy/cert.pem 2>/dev/null
chgrp submitproxy /etc/submitproxy/key.pem
chmod 640 /etc/submitproxy/key.pem
postconf -e inet_interfaces=loopback-only 'mynetworks=127.0.0.0/8' \
	smtpd_authorized_xclient_hosts=127.0.0.1 myhostname=mail.example.test \
	'mydestination=localhost, mail.example.test'
systemctl restart postfix
# Postfix's local delivery makes the mailbox, owned by alice.
rm -f /var/mail/alice

# Installed anew where the certificate is already in place (the purge
# keeps it, and the shipped configuration names it): the postinst's
# check passes, so it enables and starts the service.
dpkg --purge submitproxy >/dev/null 2>&1
dpkg -i /root/submitproxy_*_*.deb >/root/dpkg.log 2>&1
check "installed where a certificate exists, the package enables submitproxy.service" \
	systemctl is-enabled --quiet submitproxy.service
check "and starts it (Type=notify)" systemctl is-active --quiet submitproxy.service

conf=/etc/submitproxy/submitproxy.conf
sed -i 's/^workers = .*/workers = 2/; s#^key = .*#key = /etc/submitproxy/key.pem#' $conf
grep -q '^hostname = mail.example.test' $conf ||
	sed -i 's/^\[server\]/[server]\nhostname = mail.example.test/' $conf
t0=$(date +%s)
pid=$(main_pid)
reinstall
check "an upgrade restarts the running service on the new binary" sh -c "
	systemctl is-active --quiet submitproxy.service &&
	[ \"\$(systemctl show -p MainPID --value submitproxy.service)\" != $pid ]"
pid=$(main_pid)
sed -i 's#^certificate = .*#certificate = /etc/submitproxy/missing.pem#' $conf
reinstall
check "an upgrade leaves it running when its configuration fails -t" sh -c "
	grep -q 'submitproxy.service was not restarted' /root/dpkg.log &&
	[ \"\$(systemctl show -p MainPID --value submitproxy.service)\" = $pid ]"
sed -i 's#^certificate = .*#certificate = /etc/submitproxy/cert.pem#' $conf

check "logins over implicit TLS and STARTTLS deliver; a wrong password is refused" \
	python3 /root/send.py service
check "Postfix put the four messages in alice's mailbox" sh -c '
	for i in $(seq 60); do
		[ "$(grep -c "^Subject: through service" /var/mail/alice 2>/dev/null)" = 4 ] && exit 0
		sleep 0.5
	done
	exit 1'
check "XCLIENT: Postfix saw the client, authenticated" \
	grep -q "^Received: from .*127.0.0.1.*(authenticated)" /var/mail/alice
check "two event loops" sh -c "journalctl -u submitproxy.service --no-pager --since @$t0 | grep -q 'event=start .*workers=2'"
t1=$(date +%s)
check "systemctl reload runs the unit's ExecReload" systemctl reload submitproxy.service
sleep 1
check "and the network process reloads" sh -c "journalctl -u submitproxy.service --no-pager --since @$t1 | grep -q 'event=reload status=ok'"
t2=$(date +%s)
check "systemctl stop" systemctl stop submitproxy.service
check "stops within 5 s, not at TimeoutStopSec" sh -c "[ \$(( \$(date +%s) - $t2 )) -le 5 ]"
check "exits 0" sh -c "journalctl -u submitproxy.service --no-pager --since @$t2 | grep -q 'event=exit status=0'"

check "the .socket units start" systemctl start submitproxy-submission.socket submitproxy-submissions.socket
check "the first connection starts the service, which serves it" python3 /root/send.py socket
check "from the sockets systemd passed" sh -c "journalctl -u submitproxy.service --no-pager --since @$t2 | grep -q 'event=listen .*address=fd:'"
systemctl stop submitproxy.service submitproxy-submission.socket submitproxy-submissions.socket

mkdir -p /etc/systemd/system/submitproxy.service.d
printf '[Service]\nLoadCredential=tls-key:/etc/submitproxy/key.pem\n' \
	> /etc/systemd/system/submitproxy.service.d/credential.conf
sed -i 's#^key = .*#key = /run/credentials/submitproxy.service/tls-key#' $conf
systemctl daemon-reload
check "with LoadCredential= the key comes from the credential" systemctl start submitproxy.service
check "and TLS logins work" python3 /root/send.py credential
systemctl stop submitproxy.service
rm -r /etc/systemd/system/submitproxy.service.d
sed -i 's#^key = .*#key = /etc/submitproxy/key.pem#' $conf
systemctl daemon-reload
systemd-analyze security submitproxy.service --no-pager 2>/dev/null | tail -1

systemctl start submitproxy.service
check "the shipped [metrics] address answers /healthz and /metrics" python3 -c '
import urllib.request
for path, want in (("/healthz", b"ok"), ("/metrics", b"submitproxy_build_info")):
    body = urllib.request.urlopen("http://127.0.0.1:9465" + path, timeout=10).read()
    assert want in body, (path, body[:200])
'
check "removing the package stops the service" sh -c '
	dpkg --remove submitproxy >/dev/null 2>&1 &&
	! systemctl is-active --quiet submitproxy.service'
check "reinstalling starts again what the removal stopped" sh -c '
	reinstall=$(ls /root/submitproxy_*_*.deb) &&
	dpkg -i "$reinstall" >/root/dpkg.log 2>&1 &&
	systemctl is-active --quiet submitproxy.service'
[ $failed -eq 0 ] && echo "all checks passed"
exit $failed
