"""What the policy store costs a session (issue 12): full sessions
through one submitproxy against smtp-sink in three configurations, side
by side in one run:

  off      [policy] store = memory, send limits all 0: only the in-process
           AUTH check (prefix, login, known address) runs;
  memory   store = memory with send limits on: the MAIL also reads the
           login's counts, each accepted recipient and message is counted;
  redis    store = redis+unix on a Unix socket (a redis-server started
           here), send limits on: every check and count is a Redis round
           trip from the event loop.

Each session: connect, STARTTLS, EHLO, AUTH PLAIN, one small message to
two recipients, QUIT, from one client thread at a time (serial: latency)
and then from several (CPU).  Reported per configuration: CPU ms per
session of the whole service (the network process, the auth helper and
its PAM workers, from /proc/PID/stat), redis-server's own CPU per session
for redis, the mean, p50 and p95 of a session's wall time (serial), and
the ratios to "off".

    SUBMITPROXY=build/proxy/submitproxy python3 tests/bench/bench_policy.py
        [--sessions 400] [--serial 200] [--threads 4] [--max-seconds 600]

A benchmark, not a test: it prints figures and exits 0 unless something
stops it from measuring.  Loopback only; bounded in count and time.
"""

import argparse
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import backends  # noqa: E402
import bench_relay  # noqa: E402
import harness  # noqa: E402
import tlsutil  # noqa: E402

LIMITS_ON = {"user_messages_per_hour": "1000000",
             "user_recipients_per_hour": "1000000",
             "user_recipients_per_day": "1000000"}
LIMITS_OFF = {"user_messages_per_hour": "0",
              "user_recipients_per_hour": "0",
              "user_recipients_per_day": "0"}


def session(port, password, context):
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example",
                        timeout=60)
    try:
        smtp.ehlo()
        smtp.starttls(context=context)
        smtp.ehlo()
        smtp.login(bench_relay.USER, password)
        refused = smtp.sendmail("alice@example.com",
                                ["bob@example.net", "carol@example.net"],
                                bench_relay.SMALL)
        if refused:
            raise RuntimeError("refused: %r" % refused)
        smtp.quit()
    finally:
        smtp.close()


class Redis:
    def __init__(self, scope):
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed "
                             "(apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.process = subprocess.Popen(
            [exe, "--port", "0", "--unixsocket", self.sock,
             "--unixsocketperm", "777", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        scope.addCleanup(self.stop)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)

    def cpu(self):
        return backends.proc_cpu_ms(self.process.pid) or 0.0

    def stop(self):
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, True)


def start_proxy(scope, sink, limits, policy):
    keys = {"max_connections": "5000", "max_connections_per_address": "5000"}
    keys.update(limits)
    proxy = backends.RelayProxy(
        scope, sink, server={"log_level": "info"}, limits=keys,
        auth={"failure_delay": "100ms", "helper_workers": 4}, start=False)
    proxy.sections["policy"] = dict(policy)
    with open(proxy.config_path, "w") as f:
        f.write(harness.render_config(proxy.sections))
    proxy.start()
    return proxy


def service_cpu(proxy, network):
    return sum(backends.proc_cpu_ms(p) or 0.0
               for p in [network] + list(proxy.helper_pids()))


def measure(name, proxy, redis, args, deadline):
    network = proxy.network_pid()
    port = proxy.port("sub")
    context = bench_relay.client_context()
    for _ in range(10):                      # warm up: TLS, PAM, Redis
        session(port, proxy.password, context)
    times = []
    for _ in range(args.serial):
        deadline.check("serial sessions")
        t = time.monotonic()
        session(port, proxy.password, context)
        times.append((time.monotonic() - t) * 1000)
    target = bench_relay.Target()
    target.port, target.password = port, proxy.password
    cpu0, r0 = service_cpu(proxy, network), redis.cpu() if redis else 0.0
    done, errors, _ = bench_relay.run_sessions(target, args.sessions,
                                               args.threads, deadline)
    cpu1, r1 = service_cpu(proxy, network), redis.cpu() if redis else 0.0
    if errors or done == 0:
        raise SystemExit("%s: %d sessions, errors: %s" % (name, done,
                                                         errors[:3]))
    times.sort()
    return {"name": name, "cpu": (cpu1 - cpu0) / done,
            "redis_cpu": (r1 - r0) / done if redis else None,
            "mean": statistics.mean(times),
            "p50": times[len(times) // 2],
            "p95": times[int(len(times) * 0.95) - 1]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--serial", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-seconds", type=int, default=600)
    args = parser.parse_args()
    harness.require_binary()
    tlsutil.shared_pki()
    scope = bench_relay.Cleanups()
    deadline = bench_relay.Deadline(args.max_seconds)
    try:
        sink = backends.SmtpSink(scope, dump=False, max_connections=200)
        redis = Redis(scope)
        results = []
        for name, limits, policy, r in (
                ("off", LIMITS_OFF, {"store": "memory"}, None),
                ("memory", LIMITS_ON, {"store": "memory"}, None),
                ("redis", LIMITS_ON,
                 {"store": "redis+unix://" + redis.sock}, redis)):
            proxy = start_proxy(scope, sink, limits, policy)
            results.append(measure(name, proxy, r, args, deadline))
            proxy.stop()
    finally:
        scope.run()
    off = results[0]
    print("%-8s %12s %12s %10s %9s %9s %10s" % (
        "store", "CPU ms/sess", "redis ms/s", "mean ms", "p50 ms",
        "p95 ms", "CPU ratio"))
    for r in results:
        print("%-8s %12.3f %12s %10.2f %9.2f %9.2f %10.2f" % (
            r["name"], r["cpu"],
            "%.3f" % r["redis_cpu"] if r["redis_cpu"] is not None else "-",
            r["mean"], r["p50"], r["p95"], r["cpu"] / off["cpu"]))
    print("(CPU: network process + auth helper + PAM workers, %d sessions "
          "from %d threads; latency: %d serial sessions; CPU is read in "
          "10 ms ticks)" % (args.sessions, args.threads, args.serial))


if __name__ == "__main__":
    main()
