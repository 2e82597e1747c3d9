#!/usr/bin/env python3
"""Throughput of several event loops ([server] workers), side by side in
one run: submitproxy with workers = 1 and workers = 2 (and, with
--baseline BINARY, another build with one loop, to show what the
hand-off from the accept loop costs), and nginx's mail proxy with one and
two worker processes, all against the same smtp-sink.

A benchmark, not a test: it prints figures and exits 0 unless something
stops it from measuring.  Per target:

  sessions   N full sessions (connect, STARTTLS handshake, EHLO, AUTH
             PLAIN, one small message, QUIT) from P client processes (not
             threads: the clients' TLS must not queue on one Python lock):
             sessions per second of wall clock, CPU ms per session of the
             network process (all its threads) and of the auth side;
  spread     for submitproxy, how many sessions each loop took (from the
             "event=connect ... worker=N" lines).

    SUBMITPROXY=build/proxy/submitproxy python3 tests/bench/bench_workers.py
        [--sessions 600] [--clients 4] [--baseline OTHER/submitproxy]
        [--rsa 4096] [--no-nginx] [--max-seconds 900]

The load generator runs on the same machine: on a 2-core machine the
clients take about as much CPU as the proxy, so two loops cannot double
the rate; compare the rows, not the absolutes.  Loopback only; bounded in
count and time; Python standard library plus smtp-sink, pam_wrapper and
(optionally) nginx-light with libnginx-mod-mail.
"""

import argparse
import collections
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import backends  # noqa: E402
import bench_relay  # noqa: E402
import harness  # noqa: E402
import tlsutil  # noqa: E402


class WorkersTarget(bench_relay.SubmitproxyTarget):
    """submitproxy with [server] workers, and how it spread sessions."""

    def __init__(self, scope, sink, workers, name, cert=None):
        super().__init__(scope, sink, server={"workers": workers}, cert=cert)
        self.name = name

    def spread(self):
        counts = collections.Counter()
        for line in self.proxy.log_lines(r"\bevent=connect\b"):
            counts[harness.parse_log_fields(line).get("worker", "-")] += 1
        return dict(sorted(counts.items()))


def rsa_certificate(scope, bits):
    """A self-signed RSA certificate for harness.HOSTNAME: (cert, key)."""
    directory = tempfile.mkdtemp(prefix="bench-rsa-")
    os.chmod(directory, 0o755)
    scope.addCleanup(shutil.rmtree, directory, True)
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:%d" % bits,
                    "-nodes", "-days", "2", "-subj",
                    "/CN=" + harness.HOSTNAME, "-keyout", key, "-out", cert],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=120)
    os.chmod(key, 0o644)
    return cert, key


def client_process(port, password, count, seconds):
    """count sessions, one after the other, within seconds; returns
    (done, first error or None)."""
    deadline = time.monotonic() + seconds
    context = bench_relay.client_context()
    done, error = 0, None
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        try:
            bench_relay.session(port, password, context=context)
            done += 1
        except Exception as e:  # noqa: BLE001 - reported
            error = error or repr(e)
    return done, error


def measure(target, args, seconds):
    # Warm-up: PAM workers, TLS contexts, the backend probe.
    client_process(target.port, target.password, 8, seconds)
    per_client = [args.sessions // args.clients] * args.clients
    per_client[0] += args.sessions - sum(per_client)
    before = target.cpu()
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(args.clients) as pool:
        outcomes = pool.starmap(
            client_process,
            [(target.port, target.password, n, seconds)
             for n in per_client])
    elapsed = time.monotonic() - started
    after = target.cpu()
    done = sum(d for d, _ in outcomes)
    errors = [e for _, e in outcomes if e]
    result = {"name": target.name, "sessions": done,
              "rate": done / max(elapsed, 1e-9), "errors": errors}
    for group in after:
        result["cpu_" + group] = \
            (after[group] - before.get(group, 0.0)) / max(done, 1)
    if hasattr(target, "spread"):
        result["spread"] = target.spread()
    return result


def report(results):
    names = [r["name"] for r in results]
    print("%-28s" % "" + "".join("%16s" % n for n in names))
    for label, key, fmt in (("sessions completed", "sessions", "%d"),
                            ("sessions/s (wall clock)", "rate", "%.1f"),
                            ("CPU ms/session, network", "cpu_network",
                             "%.3f"),
                            ("CPU ms/session, auth side", "cpu_auth",
                             "%.3f")):
        print("%-28s" % label + "".join(
            "%16s" % (fmt % r[key] if r.get(key) is not None else "-")
            for r in results))
    base = results[0]
    print("%-28s" % ("sessions/s vs " + base["name"]) + "".join(
        "%16s" % bench_relay.ratio(r["rate"], base["rate"])
        for r in results))
    for r in results:
        if "spread" in r:
            print("%s: sessions per loop %s" % (r["name"], r["spread"]))
        if r["errors"]:
            print("%s: %d client(s) saw errors, first: %s"
                  % (r["name"], len(r["errors"]), r["errors"][0]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=600)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--baseline")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--rsa", type=int, metavar="BITS",
                        help="serve an RSA certificate of BITS bits (the "
                        "server's handshake then costs far more than the "
                        "client's, so the proxy, not the load generator, "
                        "is what runs out of CPU)")
    parser.add_argument("--max-seconds", type=float, default=900)
    args = parser.parse_args()
    if not 1 <= args.sessions <= 20000 or not 1 <= args.clients <= 64:
        parser.error("--sessions 1..20000, --clients 1..64")
    if not harness.binary():
        parser.error("set SUBMITPROXY to the submitproxy binary")
    deadline = bench_relay.Deadline(args.max_seconds)
    scope = bench_relay.Cleanups()
    results = []
    plan = []
    if args.baseline:
        plan.append(("baseline", args.baseline, 1))
    plan += [("sp workers=1", harness.binary(), 1),
             ("sp workers=2", harness.binary(), 2)]
    try:
        pki = tlsutil.shared_pki()
        cert = None
        if args.rsa:
            cert = rsa_certificate(scope, args.rsa)
            pki = types.SimpleNamespace(server=cert)
        sink = backends.SmtpSink(scope, dump=False, max_connections=500)
        print("smtp-sink at %s; %d sessions from %d client processes; "
              "%d CPUs" % (sink.address, args.sessions, args.clients,
                           os.cpu_count()))
        sys.stdout.flush()
        for name, binary, workers in plan:
            os.environ["SUBMITPROXY"] = os.path.abspath(binary)
            target = WorkersTarget(scope, sink, workers, name, cert)
            results.append(measure(target, args, max(deadline.left(), 1)))
            target.proxy.stop()
            deadline.check(name)
        if not args.no_nginx:
            for workers in (1, 2):
                try:
                    nginx = bench_relay.NginxTarget(scope, sink, pki,
                                                    workers=workers)
                except (RuntimeError, AssertionError) as e:
                    print("nginx not measured: %s" % e)
                    break
                nginx.name = "nginx x%d" % workers
                results.append(measure(nginx, args,
                                       max(deadline.left(), 1)))
                for process in nginx.processes.values():
                    nginx._stop(process)
                deadline.check(nginx.name)
    finally:
        scope.run()
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
