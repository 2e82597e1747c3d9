#!/usr/bin/env python3
"""What a scrape storm costs a session (issue 14): the latency of serial
sessions through one submitproxy with [metrics] on, with and without a
concurrent storm of GET /metrics (50 a second by default), side by side
in one run.

Each session: connect, STARTTLS, EHLO, AUTH PLAIN, one small message,
QUIT (smtplib), timed from connect to the end of QUIT on the client's
clock.  The sessions run one after another, in rounds; each round runs
a batch "quiet" (no scraper) and a batch "storm" (another process
scraping /metrics at --rate a second for the whole batch, one answer in
25 parsed in full), the order turning
from round to round so that a drift of the machine weighs on both
alike.  Reported per condition: the median, p90 and mean of a session's
wall time, the network process's CPU ms per session (utime + stime from
/proc/PID/stat, so in "storm" it includes serving the scrapes), and the
ratios storm/quiet; for the storm, the scrapes made and their median
time.  The run fails rather than report if a session or a scrape
failed (a scrape that is not a 200 or does not parse).

    SUBMITPROXY=build/proxy/submitproxy python3 tests/bench/bench_metrics.py
        [--sessions 2000] [--rounds 6] [--rate 50] [--max-seconds 300]

A benchmark, not a test: it prints figures and exits 0 unless something
stops it from measuring.  Loopback only; bounded in count and time.
"""

import argparse
import http.client
import json
import math
import os
import smtplib
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import backends  # noqa: E402
import bench_relay  # noqa: E402
import harness  # noqa: E402
import metricsutil  # noqa: E402
import tlsutil  # noqa: E402


def session(port, user, password, context):
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example",
                        timeout=60)
    try:
        smtp.ehlo()
        smtp.starttls(context=context)
        smtp.ehlo()
        smtp.esmtp_features["auth"] = "PLAIN"
        smtp.login(user, password)
        refused = smtp.sendmail("alice@example.com", ["bob@example.net"],
                                bench_relay.SMALL)
        if refused:
            raise RuntimeError("refused: %r" % refused)
        smtp.quit()
    finally:
        smtp.close()


class Storm:
    """A process scraping /metrics rate times a second until stop() (a
    process of its own: a thread here would take the interpreter lock
    from the client being timed).  It runs this file with --scraper."""

    def __init__(self, proxy, rate, deadline):
        host, port = metricsutil.metrics_address(proxy)
        self.times = []
        self.failures = []
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--scraper",
             "%s:%d" % (host, port), "--rate", str(rate),
             "--max-seconds", str(max(1, int(deadline.left())))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def stop(self):
        try:
            out, _ = self.process.communicate(input=b"", timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            self.failures.append("the scraper did not stop")
            return
        if self.process.returncode != 0:
            self.failures.append("the scraper exited %d"
                                 % self.process.returncode)
            return
        result = json.loads(out.decode())
        self.times = result["times"]
        self.failures += result["failures"]


def scraper_main(address, rate, max_seconds):
    """--scraper: GET /metrics from address rate times a second until
    stdin closes (or max_seconds); then the times and failures as JSON
    on stdout.  Every 25th answer is parsed in full (metricsutil.parse),
    the others only checked for a 200 and the text format's frame: the
    parse is this process's CPU, taken from the machine the sessions are
    timed on."""
    host, port = harness.parse_address(address)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), stop.set()),
                     daemon=True).start()
    times, failures = [], []
    interval = 1.0 / rate
    end = time.monotonic() + max_seconds
    next_at = time.monotonic()
    while not stop.is_set() and time.monotonic() < end:
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
            if response.status != 200:
                failures.append("status %d" % response.status)
            elif len(times) % 25 == 0:
                metricsutil.parse(body)
            elif not (body.startswith("# HELP ") and body.endswith("\n")):
                failures.append("not the text format: %r" % body[:80])
        except (OSError, http.client.HTTPException,
                metricsutil.ExpositionError) as e:
            failures.append(repr(e))
        finally:
            conn.close()
        times.append(time.perf_counter() - t0)
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))
    json.dump({"times": times, "failures": failures}, sys.stdout)


class Condition:
    def __init__(self, name):
        self.name = name
        self.times = []
        self.cpu_ms = 0.0
        self.scrape_times = []
        self.scrape_failures = []


def run_batch(cond, proxy, network, count, deadline, context, rate):
    storm = Storm(proxy, rate, deadline) if rate else None
    cpu0 = backends.proc_cpu_ms(network)
    try:
        for _ in range(count):
            deadline.check("the %s sessions" % cond.name)
            t0 = time.perf_counter()
            session(proxy.port("sub"), proxy.USER, proxy.password, context)
            cond.times.append(time.perf_counter() - t0)
    finally:
        cpu1 = backends.proc_cpu_ms(network)
        if storm is not None:
            storm.stop()
            cond.scrape_times += storm.times
            cond.scrape_failures += storm.failures
    cond.cpu_ms += (cpu1 or 0.0) - (cpu0 or 0.0)


def percentile(values, p):
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000,
                        help="serial sessions per condition")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rate", type=float, default=50.0,
                        help="scrapes a second during the storm")
    parser.add_argument("--max-seconds", type=int, default=300)
    parser.add_argument("--scraper", metavar="HOST:PORT",
                        help=argparse.SUPPRESS)  # the storm's own process
    args = parser.parse_args()
    if args.scraper:
        scraper_main(args.scraper, args.rate, args.max_seconds)
        return
    if args.sessions < 1 or args.rounds < 1 or args.rate <= 0:
        parser.error("--sessions, --rounds and --rate must be positive")
    harness.require_binary()
    tlsutil.shared_pki()
    scope = bench_relay.Cleanups()
    deadline = bench_relay.Deadline(args.max_seconds)
    context = bench_relay.client_context()
    rounds = min(args.rounds, args.sessions)
    quiet, storm = Condition("quiet"), Condition("storm")
    started = time.monotonic()
    try:
        sink = backends.SmtpSink(scope, dump=False)
        proxy = metricsutil.MetricsProxy(
            scope, sink, server={"log_level": "info"},
            # Above the default send limits (200 messages an hour).
            limits={"idle_timeout": "600s",
                    "user_messages_per_hour": "1000000",
                    "user_recipients_per_hour": "1000000",
                    "user_recipients_per_day": "1000000"},
            auth={"failure_delay": "100ms"})
        network = proxy.network_pid
        for _ in range(10):                 # TLS, PAM workers, backend
            session(proxy.port("sub"), proxy.USER, proxy.password, context)
        per_round = [args.sessions // rounds +
                     (1 if i < args.sessions % rounds else 0)
                     for i in range(rounds)]
        for n, count in enumerate(per_round):
            order = [(quiet, 0), (storm, args.rate)]
            if n % 2:
                order.reverse()
            for cond, rate in order:
                run_batch(cond, proxy, network, count, deadline, context,
                          rate)
        final = metricsutil.scrape(proxy)
    finally:
        scope.run()
    elapsed = time.monotonic() - started

    if storm.scrape_failures:
        raise SystemExit("bench_metrics: %d scrapes failed, e.g. %s"
                         % (len(storm.scrape_failures),
                            storm.scrape_failures[0]))
    sessions = 10 + 2 * args.sessions
    counted = final.value("submitproxy_transactions_total", reply="2xx")
    if counted != sessions:
        raise SystemExit("bench_metrics: %s messages counted, %d sent"
                         % (counted, sessions))
    report(quiet, storm, args, rounds, elapsed)


def report(quiet, storm, args, rounds, elapsed):
    def figures(c):
        ms = [t * 1000 for t in c.times]
        return {"median": statistics.median(ms), "p90": percentile(ms, 0.9),
                "mean": statistics.mean(ms),
                "cpu": c.cpu_ms / len(ms)}

    q, s = figures(quiet), figures(storm)
    print("%-6s %8s %9s %8s %8s %12s" % ("", "sessions", "median ms",
                                        "p90 ms", "mean ms",
                                        "CPU ms/sess"))
    for name, c, f in (("quiet", quiet, q), ("storm", storm, s)):
        print("%-6s %8d %9.2f %8.2f %8.2f %12.3f"
              % (name, len(c.times), f["median"], f["p90"], f["mean"],
                 f["cpu"]))
    print("%-6s %8s %9.3f %8.3f %8.3f %12.3f"
          % ("ratio", "", s["median"] / q["median"], s["p90"] / q["p90"],
             s["mean"] / q["mean"], s["cpu"] / q["cpu"] if q["cpu"] else
             float("nan")))
    storm_seconds = sum(storm.times)
    print("storm: %d scrapes (%.1f a second over the storm batches), "
          "median %.2f ms, p90 %.2f ms, none failed"
          % (len(storm.scrape_times),
             len(storm.scrape_times) / storm_seconds if storm_seconds else 0,
             statistics.median(storm.scrape_times) * 1000,
             percentile(storm.scrape_times, 0.9) * 1000))
    print("(serial sessions: STARTTLS, AUTH PLAIN, one message, QUIT; %d "
          "rounds, order turning; target rate %.0f scrapes/s; CPU: the "
          "network process, read in %d ms ticks; %.0f s in all)"
          % (rounds, args.rate, 1000 // os.sysconf("SC_CLK_TCK"), elapsed))


if __name__ == "__main__":
    main()
