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

id submitproxy >/dev/null 2>&1 || systemd-sysusers
id alice >/dev/null 2>&1 || { useradd -m alice; echo 'alice:s3cret-Pw' | chpasswd; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=mail.example.test -keyout /etc/submitproxy/key.pem \
	-out /etc/submitproxy/cert.pem 2>/dev/null
chgrp submitproxy /etc/submitproxy/key.pem
chmod 640 /etc/submitproxy/key.pem
conf=/etc/submitproxy/submitproxy.conf
sed -i 's/^workers = .*/workers = 2/; s#^key = .*#key = /etc/submitproxy/key.pem#' $conf
grep -q '^hostname = mail.example.test' $conf ||
	sed -i 's/^\[server\]/[server]\nhostname = mail.example.test/' $conf
postconf -e inet_interfaces=loopback-only 'mynetworks=127.0.0.0/8' \
	smtpd_authorized_xclient_hosts=127.0.0.1 myhostname=mail.example.test \
	'mydestination=localhost, mail.example.test'
systemctl restart postfix
# Postfix's local delivery makes the mailbox, owned by alice.
rm -f /var/mail/alice
systemctl daemon-reload

t0=$(date +%s)
check "submitproxy.service starts (Type=notify)" systemctl start submitproxy.service
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
[ $failed -eq 0 ] && echo "all checks passed"
exit $failed
