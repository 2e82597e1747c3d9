"""Inside the nspawn container: two logins and messages over implicit TLS
(465) and two over STARTTLS (587) as alice, then a wrong password that must
get 535.  Exits non-zero on any failure."""
import smtplib
import ssl
import sys

tag = sys.argv[1] if len(sys.argv) > 1 else "x"
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
for i in range(2):
    for implicit in (True, False):
        if implicit:
            s = smtplib.SMTP_SSL("127.0.0.1", 465, context=context,
                                 timeout=20)
        else:
            s = smtplib.SMTP("127.0.0.1", 587, timeout=20)
            s.starttls(context=context)
        s.login("alice", "s3cret-Pw")
        s.sendmail("alice@mail.example.test", ["alice@localhost"],
                   "Subject: through %s %d\r\n\r\nbody\r\n" % (tag, i))
        s.quit()
s = smtplib.SMTP_SSL("127.0.0.1", 465, context=context, timeout=20)
try:
    s.login("alice", "wrong")
except smtplib.SMTPAuthenticationError as e:
    sys.exit(0 if e.smtp_code == 535 else 1)
sys.exit("a wrong password was accepted")
