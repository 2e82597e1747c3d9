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
two recipients, QUIT.  The three proxies run at once on their own ports
(one smtp-sink), and are driven one at a time, in rounds whose order
turns, so that a drift of the machine during the run weighs on all three
alike.  In each round, per configuration: sessions from one client
(serial: the latency of a session, client wall time) and then from
several threads (CPU).  Reported per configuration: CPU ms per session of
the whole service (the network process, the auth helper and its PAM
workers, utime + stime from /proc/PID/stat as bench_relay.py reads them),
redis-server's own CPU per session for redis, the mean, p50 and p95 of a
session's wall time, and the ratios to "off".  The run checks that the
Redis store stayed up and that Redis counted every recipient, so that
"redis" cannot silently measure the local fallback.

    SUBMITPROXY=build/proxy/submitproxy python3 tests/bench/bench_policy.py
        [--sessions 500] [--serial 200] [--threads 4] [--rounds 5]
        [--max-seconds 600]

A benchmark, not a test: it prints figures and exits 0 unless something
stops it from measuring.  Loopback only; bounded in count and time.
"""

import argparse
import math
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


def session(port, password, context=None):
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example",
                        timeout=60)
    try:
        smtp.ehlo()
        smtp.starttls(context=context or bench_relay.client_context())
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


class Config:
    """One configuration under measurement and what it has summed."""

    def __init__(self, scope, sink, name, limits, policy, redis=None):
        self.name, self.redis = name, redis
        self.proxy = start_proxy(scope, sink, limits, policy)
        self.network = self.proxy.network_pid()
        self.target = bench_relay.Target()
        self.target.port = self.proxy.port("sub")
        self.target.password = self.proxy.password
        self.times, self.cpu, self.redis_cpu, self.done = [], 0.0, 0.0, 0

    def serial(self, count, deadline, context):
        for _ in range(count):
            deadline.check("serial sessions (%s)" % self.name)
            t = time.monotonic()
            session(self.target.port, self.target.password, context)
            self.times.append((time.monotonic() - t) * 1000)

    def threaded(self, count, threads, deadline):
        cpu0 = service_cpu(self.proxy, self.network)
        r0 = self.redis.cpu() if self.redis else 0.0
        done, errors, _ = bench_relay.run_sessions(
            self.target, count, threads, deadline, one=session)
        self.cpu += service_cpu(self.proxy, self.network) - cpu0
        if self.redis:
            self.redis_cpu += self.redis.cpu() - r0
        self.done += done
        if errors or done < count:
            raise SystemExit("%s: %d of %d sessions, errors: %s"
                             % (self.name, done, count, errors[:3]))

    def result(self):
        times = sorted(self.times)
        return {"name": self.name, "cpu": self.cpu / self.done,
                "redis_cpu": (self.redis_cpu / self.done
                              if self.redis else None),
                "mean": statistics.mean(times),
                "p50": times[len(times) // 2],
                "p95": times[max(math.ceil(len(times) * 0.95) - 1, 0)]}


def check_redis_counted(config, sessions, redis):
    """The redis proxy kept its store up and Redis holds every recipient
    it accepted (two a session): the figures are Redis's, not those of
    the local fallback."""
    log = config.proxy.log()
    if "event=policy_store" not in log or "state=down" in log:
        raise SystemExit("redis: the store was not up all along:\n%s"
                         % "\n".join(line for line in log.splitlines()
                                     if "policy_store" in line))
    cli = shutil.which("redis-cli")
    if cli is None:
        return
    got = subprocess.run([cli, "-s", redis.sock, "get",
                          "submitproxy:rh:" + bench_relay.USER],
                         capture_output=True, text=True, timeout=10)
    if got.stdout.strip() != str(2 * sessions):
        raise SystemExit("redis: %r recipients counted in Redis, %d "
                         "expected" % (got.stdout.strip(), 2 * sessions))


def split(total, parts):
    return [total // parts + (1 if i < total % parts else 0)
            for i in range(parts)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500,
                        help="threaded sessions per configuration (CPU)")
    parser.add_argument("--serial", type=int, default=200,
                        help="serial sessions per configuration (latency)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-seconds", type=int, default=600)
    args = parser.parse_args()
    harness.require_binary()
    tlsutil.shared_pki()
    scope = bench_relay.Cleanups()
    deadline = bench_relay.Deadline(args.max_seconds)
    context = bench_relay.client_context()
    rounds = max(1, min(args.rounds, args.sessions, args.serial))
    try:
        sink = backends.SmtpSink(scope, dump=False, max_connections=200)
        redis = Redis(scope)
        configs = [
            Config(scope, sink, "off", LIMITS_OFF, {"store": "memory"}),
            Config(scope, sink, "memory", LIMITS_ON, {"store": "memory"}),
            Config(scope, sink, "redis", LIMITS_ON,
                   {"store": "redis+unix://" + redis.sock}, redis)]
        warm = 10                            # TLS, PAM workers, Redis
        for c in configs:
            c.serial(warm, deadline, context)
            c.times = []
        for n, (serial, threaded) in enumerate(zip(
                split(args.serial, rounds), split(args.sessions, rounds))):
            for c in configs[n % 3:] + configs[:n % 3]:
                c.serial(serial, deadline, context)
                c.threaded(threaded, args.threads, deadline)
        check_redis_counted(configs[2], warm + args.serial + args.sessions,
                            redis)
        results = [c.result() for c in configs]
    finally:
        scope.run()
    report(results, args, rounds)


def report(results, args, rounds):
    off = results[0]
    print("%-7s %11s %11s %8s %8s %8s %9s %10s %10s" % (
        "store", "CPU ms/ses", "redis ms/s", "mean ms", "p50 ms", "p95 ms",
        "CPU/off", "+redis/off", "mean/off"))
    for r in results:
        both = r["cpu"] + (r["redis_cpu"] or 0.0)
        print("%-7s %11.3f %11s %8.2f %8.2f %8.2f %9.2f %10s %10.2f" % (
            r["name"], r["cpu"],
            "%.3f" % r["redis_cpu"] if r["redis_cpu"] is not None else "-",
            r["mean"], r["p50"], r["p95"], r["cpu"] / off["cpu"],
            "%.2f" % (both / off["cpu"]) if r["redis_cpu"] is not None
            else "-",
            r["mean"] / off["mean"]))
    print("(CPU: network process + auth helper + PAM workers over %d "
          "sessions from %d threads, +redis adds redis-server's; latency: "
          "%d serial sessions; %d rounds, order turning; CPU is read in "
          "%d ms ticks)" % (args.sessions, args.threads, args.serial,
                            rounds, 1000 // os.sysconf("SC_CLK_TCK")))


if __name__ == "__main__":
    main()
