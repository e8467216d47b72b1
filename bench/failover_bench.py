#!/usr/bin/env python3
"""Failover under load, measured.

Starts, as real processes on 127.0.0.1: a throw-away PostgreSQL
(tests/tools/pg_fixture.sh), two gateways on it (--store postgresql://...) and
three workers. Drives embeddings at concurrency C (default 16) through both
gateways (thread i sends to gateway i % 2, like a client behind a load
balancer: a request that gets no HTTP answer at all, because its gateway is
down, is sent once to the other gateway and counted as "retried"). Meanwhile:

  1. SIGKILLs a random worker every KILL_EVERY seconds and restarts it
     DOWN_S seconds later (WORKER_KILLS times);
  2. freezes a worker with SIGSTOP and measures how long each gateway takes to
     notice (its rookery_cluster_workers_connected gauge drops), then SIGCONTs it;
  3. SIGKILLs a gateway and restarts it on the same port.

Async embedding jobs are submitted through both gateways during the run, and
users and API keys are made before it; at the end every one must still be
there (jobs succeeded, users log in on both gateways, keys work on both).

Prints one JSON summary: requests sent, failed (no 2xx after the one retry),
failure rate, p50/p99 overall and during failures, detection times, and the
lost users/keys/jobs (expected: none).

  bench/failover_bench.py [--concurrency 16] [--worker-kills 5] [--kill-every 4]
                          [--binary build/rookery] [--keep DIR]

The model is a ResNet-18 with random weights (the test servers' image
pipeline): the bench measures failover, not embedding quality, and a small
model lets three workers share two cores.
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=b"", headers=None, timeout=40):
    """(status, body) or (None, error) when no HTTP answer came."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)


class Node:
    def __init__(self, name, binary, args, env, logdir):
        self.name, self.binary, self.args, self.env = name, binary, args, env
        self.log = os.path.join(logdir, name + ".log")
        self.proc = None
        self.http_port = free_port()

    def start(self, timeout=240):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--port", str(self.http_port)] + self.args,
            stdout=logf, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start; see {self.log}")
            st, _ = request(self.http_port, "GET", "/healthz", timeout=2)
            if st == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {timeout} s; see {self.log}")

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self):
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def connected_workers(self):
        st, body = request(self.http_port, "GET", "/metrics", timeout=2)
        if st != 200:
            return None
        for line in body.decode().splitlines():
            if line.startswith("rookery_cluster_workers_connected"):
                return int(float(line.split()[-1]))
        return None


def percentile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "rookery"))
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--worker-kills", type=int, default=5)
    ap.add_argument("--kill-every", type=float, default=4.0)
    ap.add_argument("--down-s", type=float, default=2.0)
    ap.add_argument("--warmup-s", type=float, default=5.0)
    ap.add_argument("--heartbeat-ms", type=int, default=500)
    ap.add_argument("--connection-timeout-ms", type=int, default=2000)
    ap.add_argument("--photo", default="/usr/lib/python3/dist-packages/skimage/data/chelsea.png")
    ap.add_argument("--keep", help="keep logs and data in this directory")
    a = ap.parse_args()

    root = a.keep or tempfile.mkdtemp(prefix="rookery-failover-")
    os.makedirs(root, exist_ok=True)
    pgdir = os.path.join(root, "pg")
    out = subprocess.run([os.path.join(REPO, "tests/tools/pg_fixture.sh"), "start", pgdir],
                         check=True, capture_output=True, text=True)
    dsn = open(os.path.join(pgdir, "dsn")).read().strip()
    env = dict(os.environ)
    env.update({
        "ROOKERY_PASSWORD_HASH_COST": "min", "ROOKERY_LOG_LEVEL": "info",
        "ROOKERY_TORCH_THREADS": "1", "ROOKERY_SCHEDULER_THREADS": "2",
        "ROOKERY_PIPELINES": '{"image": "resnet18"}', "ROOKERY_BUILTIN_MODELS": "",
        "ROOKERY_HEARTBEAT_MS": str(a.heartbeat_ms),
        "ROOKERY_CONNECTION_TIMEOUT_MS": str(a.connection_timeout_ms),
        "ROOKERY_RECONNECT_MS": "500", "ROOKERY_KEY_RATE_PER_S": "100000", "ROOKERY_KEY_BURST": "100000",
        "ROOKERY_JOB_LEASE_S": "4", "ROOKERY_JOB_POLL_MS": "500",
    })
    cluster_ports = [free_port() for _ in range(3)]
    workers = [Node(f"worker{i}", a.binary,
                    ["--role", "worker", "--cluster-port", str(p), "--data", os.path.join(root, f"w{i}")],
                    env, root) for i, p in enumerate(cluster_ports)]
    seeds = ",".join(f"127.0.0.1:{p}" for p in cluster_ports)
    shared = os.path.join(root, "gateways")  # the gateways' shared data directory
    gateways = [Node(f"gateway{i}", a.binary,
                     ["--role", "gateway", "--seeds", seeds, "--store", dsn, "--data", shared],
                     env, root) for i in range(2)]
    nodes = workers + gateways
    try:
        print(f"failover: {out.stdout.strip()}", file=sys.stderr)
        for n in nodes:
            n.start()
        for g in gateways:  # until each gateway has connected all three workers
            deadline = time.time() + 120
            while g.connected_workers() != 3 and time.time() < deadline:
                time.sleep(0.2)
            if g.connected_workers() != 3:
                raise RuntimeError(f"{g.name} did not connect all workers")
        return run(a, root, workers, gateways)
    finally:
        for n in nodes:
            n.signal(signal.SIGCONT)
            n.kill()
        subprocess.run([os.path.join(REPO, "tests/tools/pg_fixture.sh"), "stop", pgdir])
        print(f"failover: logs in {root}" if a.keep else "", file=sys.stderr)


def run(a, root, workers, gateways):
    photo = open(a.photo, "rb").read()
    jh = {"Content-Type": "application/json"}
    # Users and keys made before the run, half on each gateway.
    users = []
    for i in range(6):
        g = gateways[i % 2]
        name, pw = f"user{i}", "correct horse battery"
        st, _ = request(g.http_port, "POST", "/v1/users", json.dumps({"username": name, "password": pw}), jh)
        assert st == 201, st
        st, body = request(g.http_port, "POST", "/v1/auth/login", json.dumps({"username": name, "password": pw}), jh)
        token = json.loads(body)["token"]
        st, body = request(gateways[1 - i % 2].http_port, "POST", "/v1/keys",
                           json.dumps({"name": "bench", "scopes": ["embed", "train"]}),
                           {**jh, "Authorization": "Bearer " + token})
        assert st == 201, (st, body)
        users.append((name, pw, json.loads(body)["key"]))
    key = users[0][2]

    lock = threading.Lock()
    samples = []  # (t_start, latency_s, status or None, retried)
    jobs = []     # async job ids
    stop = threading.Event()
    t0 = time.time()

    def client(i):
        primary, other = gateways[i % 2], gateways[1 - i % 2]
        n = 0
        while not stop.is_set():
            n += 1
            path = "/v1/embed?async=true" if n % 25 == 0 else "/v1/embed"
            ts = time.time()
            st, body = request(primary.http_port, "POST", path, photo, {"X-API-Key": key})
            retried = False
            if st is None:  # no HTTP answer: what a load balancer would send elsewhere
                retried = True
                st, body = request(other.http_port, "POST", path, photo, {"X-API-Key": key})
            with lock:
                samples.append((ts - t0, time.time() - ts, st, retried))
                if st == 202:
                    jobs.append(json.loads(body)["id"])

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(a.concurrency)]
    for t in threads:
        t.start()
    events = []   # (name, t_from, t_to): windows counted as "during failures"
    time.sleep(a.warmup_s)

    # 1. Worker kills.
    kill_detect = []
    for k in range(a.worker_kills):
        w = random.choice(workers)
        tk = time.time()
        w.kill()
        # detection: the first gateway whose gauge drops
        while time.time() - tk < 10 and all((g.connected_workers() or 0) >= 3 for g in gateways):
            time.sleep(0.02)
        kill_detect.append(time.time() - tk)
        time.sleep(max(0.0, a.down_s - (time.time() - tk)))
        w.start()
        tr = time.time()
        events.append((f"kill {w.name}", tk - t0, tr - t0 + 3))
        time.sleep(max(0.0, a.kill_every - (time.time() - tk)))

    # 2. A frozen worker: how long until each gateway drops it.
    for g in gateways:
        while g.connected_workers() != 3:
            time.sleep(0.1)
    w = random.choice(workers)
    ts = time.time()
    w.signal(signal.SIGSTOP)
    stop_detect = {}
    while len(stop_detect) < len(gateways) and time.time() - ts < 30:
        for g in gateways:
            if g.name not in stop_detect and (g.connected_workers() or 3) < 3:
                stop_detect[g.name] = round(time.time() - ts, 3)
        time.sleep(0.02)
    w.signal(signal.SIGCONT)
    events.append((f"SIGSTOP {w.name}", ts - t0, time.time() - t0 + 3))
    time.sleep(3)

    # 3. A gateway dies and comes back on the same port.
    g = gateways[1]
    tg = time.time()
    g.kill()
    time.sleep(3)
    g.start()
    events.append((f"kill {g.name}", tg - t0, time.time() - t0 + 3))
    time.sleep(5)
    stop.set()
    for t in threads:
        t.join(timeout=60)

    # Nothing lost: jobs, users, keys.
    lost_jobs = []
    for jid in jobs:
        ok = False
        deadline = time.time() + 120
        while time.time() < deadline:
            st, body = request(gateways[0].http_port, "GET", "/v1/jobs/" + jid, headers={"X-API-Key": key})
            state = json.loads(body)["state"] if st == 200 else None
            if state == "succeeded":
                st2, _ = request(gateways[1].http_port, "GET", "/v1/jobs/" + jid, headers={"X-API-Key": key})
                ok = st2 == 200
                break
            if state in ("failed", "cancelled"):
                break
            time.sleep(0.2)
        if not ok:
            lost_jobs.append(jid)
    lost_users, lost_keys = [], []
    for name, pw, k in users:
        for g in gateways:
            st, _ = request(g.http_port, "POST", "/v1/auth/login", json.dumps({"username": name, "password": pw}), jh)
            if st != 200:
                lost_users.append(f"{name}@{g.name}")
            st, _ = request(g.http_port, "GET", "/v1/auth/me", headers={"X-API-Key": k})
            if st != 200:
                lost_keys.append(f"{name}@{g.name}")

    def in_failure(t):
        return any(f <= t <= to for _, f, to in events)

    ok = [s for s in samples if s[2] in (200, 202)]
    failed = [s for s in samples if s[2] not in (200, 202)]
    statuses = {}
    for s in failed:
        statuses[str(s[2])] = statuses.get(str(s[2]), 0) + 1
    during = [s[1] for s in ok if in_failure(s[0])]
    steady = [s[1] for s in ok if not in_failure(s[0])]
    summary = {
        "concurrency": a.concurrency,
        "duration_s": round(max(s[0] for s in samples), 1) if samples else 0,
        "requests": len(samples),
        "failed": len(failed),
        "failed_by_status": statuses,
        "failure_rate": round(len(failed) / max(1, len(samples)), 5),
        "retried_on_other_gateway": sum(1 for s in samples if s[3]),
        "throughput_per_s": round(len(ok) / max(1e-9, max(s[0] for s in samples)), 1) if samples else 0,
        "p50_ms": round(1000 * percentile([s[1] for s in ok], 0.5), 1) if ok else None,
        "p99_ms": round(1000 * percentile([s[1] for s in ok], 0.99), 1) if ok else None,
        "p99_steady_ms": round(1000 * percentile(steady, 0.99), 1) if steady else None,
        "p99_during_failures_ms": round(1000 * percentile(during, 0.99), 1) if during else None,
        "worker_kill_detection_s": [round(x, 3) for x in kill_detect],
        "sigstop_detection_s": stop_detect,
        "heartbeat_ms": a.heartbeat_ms, "connection_timeout_ms": a.connection_timeout_ms,
        "async_jobs": len(jobs), "lost_jobs": lost_jobs,
        "users": len(users), "lost_users": lost_users, "lost_keys": lost_keys,
        "events": [{"what": w, "from_s": round(f, 1), "to_s": round(t, 1)} for w, f, t in events],
    }
    print(json.dumps(summary, indent=2))
    return 0 if not lost_jobs and not lost_users and not lost_keys else 1


if __name__ == "__main__":
    sys.exit(main())
