#!/usr/bin/env python3
"""Fleet benchmarks with real processes on loopback (see bench/fleet.sh).

propagation BIN CHANGES PROXIES
    One `backout up --no-proxy`, PROXIES `backout proxy --control-plane`
    processes, a rollout held at an approve gate, then CHANGES route changes
    (`set_weight`) through the API, one after another. The API answers a
    route change once every connected proxy serves it, so the client's round
    trip is "API call -> all proxies serving". Each change's `fleet.applied`
    fact is checked: served by all PROXIES, none lagging. Prints p50/p90/p99
    of the round trip and of publish -> last ACK.

failover BIN PG_URL
    Two `backout up --no-proxy --store PG_URL`, two proxies following both,
    steady load through the proxies; the leader is SIGKILLed and the time
    until the follower accepts a change (leading and acting) is measured,
    five times (the killed one is started again as the new follower).
    Prints each failover time and the requests that failed.
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


SPEC = """name: shop
listen: 127.0.0.1:{port}
probes:
  readiness: {{path: /ready, period: 500ms, timeout: 400ms}}
strategy:
  steps: [{{set_weight: 10}}, approve]
  soak: 1s
  drain: 200ms
  progress_deadline: 600s
analysis:
  promote_after: 3600s
driver:
  process:
    command: "'{bin}' demo-app --port {{port}} --version {{version}} --behaviour {{artifact}}"
    stop_timeout: 2s
"""


class Api:
    def __init__(self, url, token):
        self.url, self.token = url, token

    def call(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def status(self):
        return self.call("GET", "/api/v1/services/shop")[1]

    def wait(self, what, done, secs=60):
        deadline = time.time() + secs
        while time.time() < deadline:
            try:
                s = self.status()
                if done(s):
                    return s
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise SystemExit(f"timed out waiting for {what}")


class Up:
    def __init__(self, bin_, dirname, spec_text, extra):
        self.bin, self.dir, self.extra = bin_, dirname, extra
        os.makedirs(dirname, exist_ok=True)
        with open(os.path.join(dirname, "shop.yaml"), "w") as f:
            f.write(spec_text)
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.proc = None
        self.launch()

    def launch(self):
        log = open(os.path.join(self.dir, "up.log"), "a")
        self.proc = subprocess.Popen(
            [self.bin, "up", "-f", "shop.yaml", "--api", f"127.0.0.1:{self.api_port}",
             "--data", "data", "--workers", "1", "--no-proxy"] + self.extra,
            cwd=self.dir, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        # Answering, not only bound: the listener is bound before the store
        # is set up, and the admin token is written after that.
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        raise SystemExit("backout up did not start; see " + self.dir)

    def token(self):
        with open(os.path.join(self.dir, "data", "admin.token")) as f:
            return f.read().strip()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def cli(bin_, api, token, *args):
    env = dict(os.environ, BACKOUT_SERVER=api, BACKOUT_TOKEN=token)
    out = subprocess.run([bin_, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"backout {args}: {out.stderr}")
    return out.stdout.strip()


def proxies(bin_, base, apis, token_api, admin, n):
    procs = []
    for i in range(n):
        name = f"edge-{i + 1}"
        tok = cli(bin_, token_api, admin, "token", "create", name, "--role", "proxy")
        port = free_port()
        log = open(os.path.join(base, f"{name}.log"), "a")
        cmd = [bin_, "proxy", "--token", tok, "--name", name, "--workers", "1",
               "--state", os.path.join(base, f"{name}-state"),
               "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{free_port()}"]
        for a in apis:
            cmd += ["--control-plane", a]
        procs.append((port, subprocess.Popen(cmd, stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL)))
    return procs


def connected(s):
    return sum(1 for p in s["proxy"]["proxies"] if p.get("connected"))


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Load:
    """Keep-alive GETs through each proxy from threads; counts failures."""

    def __init__(self, ports):
        self.stop = False
        self.sent = self.failed = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(p,), daemon=True)
                        for p in ports for _ in range(2)]
        for t in self.threads:
            t.start()

    def run(self, port):
        import http.client
        conn = None
        while not self.stop:
            ok = False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                ok = 200 <= r.status < 300
            except (OSError, http.client.HTTPException):
                conn = None
            with self.lock:
                self.sent += 1
                self.failed += 0 if ok else 1
            time.sleep(0.02)

    def end(self):
        self.stop = True
        for t in self.threads:
            t.join()
        return self.sent, self.failed


def propagation(bin_, changes, n):
    base = tempfile.mkdtemp(prefix="bench-fleet-")
    up = Up(bin_, os.path.join(base, "cp"), SPEC.format(port=free_port(), bin=bin_), [])
    admin = up.token()
    api = Api(up.url, admin)
    procs = proxies(bin_, base, [up.url], up.url, admin, n)
    try:
        cli(bin_, up.url, admin, "release", "shop", "--version", "v1", "--artifact=--latency 1ms")
        api.wait("v1 stable on every proxy", lambda s: s["state"]["stable"] == "v1"
                 and s["state"]["rollout"] is None and connected(s) == n
                 and s["proxy"]["progress"].get("pending", []) == [], 120)
        cli(bin_, up.url, admin, "release", "shop", "--version", "v2", "--artifact=--latency 1ms")
        api.wait("v2 at its gate", lambda s: (s["state"]["rollout"] or {}).get("step") == 1
                 and connected(s) == n, 120)
        load = Load([p for p, _ in procs])
        rtts = []
        for i in range(changes):
            weight = 1 + i % 90
            t0 = time.perf_counter()
            code, body = api.call("POST", "/api/v1/services/shop/actions",
                                  {"command": "set_weight", "weight": weight, "reason": "bench"})
            rtts.append((time.perf_counter() - t0) * 1000)
            if code != 200:
                raise SystemExit(f"change {i}: {code} {body}")
        sent, failed = load.end()
        events, after = [], 0
        while True:
            code, page = api.call("GET", f"/api/v1/events?after={after}&limit=1000")
            if not page:
                break
            events += page
            after = page[-1]["seq"]
        applied = [e["body"] for e in events if e["kind"] == "fleet.applied"][-changes:]
        spreads = [a["applied_at_ms"] - a["published_ms"] for a in applied]
        full = sum(1 for a in applied if len(a["served_by"]) == n and not a["lagging"])
        print(f"route propagation: {changes} changes to {n} proxies, under load "
              f"({sent} requests, {failed} failed)")
        print(f"  API call -> every proxy serving (client round trip), ms: "
              f"p50 {pct(rtts, .5):.1f}  p90 {pct(rtts, .9):.1f}  p99 {pct(rtts, .99):.1f}  "
              f"max {max(rtts):.1f}")
        print(f"  publish -> last ACK (fleet.applied), ms: p50 {pct(spreads, .5)}  "
              f"p90 {pct(spreads, .9)}  p99 {pct(spreads, .99)}  max {max(spreads)}")
        print(f"  changes served by all {n} proxies within the deadline: {full} of {len(applied)}")
    finally:
        for _, p in procs:
            p.kill()
        up.kill()
        stop_demo_apps(base)


def failover(bin_, url, rounds=5):
    base = tempfile.mkdtemp(prefix="bench-failover-")
    text = SPEC.format(port=free_port(), bin=bin_)
    a = Up(bin_, os.path.join(base, "a"), text, ["--store", url, "--name", "cp-a"])
    Api(a.url, a.token()).wait("a to lead", lambda s: s["control_plane"]["leading"], 30)
    b = Up(bin_, os.path.join(base, "b"), text, ["--store", url, "--name", "cp-b"])
    admin = a.token()
    ups = [a, b]
    procs = proxies(bin_, base, [a.url, b.url], a.url, admin, 2)
    try:
        cli(bin_, a.url, admin, "release", "shop", "--version", "v1", "--artifact=--latency 1ms")
        Api(a.url, admin).wait("v1 stable", lambda s: s["state"]["stable"] == "v1"
                               and s["state"]["rollout"] is None and connected(s) == 2, 120)
        cli(bin_, a.url, admin, "release", "shop", "--version", "v2", "--artifact=--latency 1ms")
        Api(a.url, admin).wait("v2 at its gate",
                               lambda s: (s["state"]["rollout"] or {}).get("step") == 1, 120)
        load = Load([p for p, _ in procs])
        time.sleep(2)
        times = []
        weight = 10
        for r in range(rounds):
            leader = next(u for u in ups if Api(u.url, admin).status()["control_plane"]["leading"])
            other = next(u for u in ups if u is not leader)
            api = Api(other.url, admin)
            leader.kill()
            t0 = time.perf_counter()
            while True:
                weight = 10 + (weight + 1) % 80
                try:
                    code, _ = api.call("POST", "/api/v1/services/shop/actions",
                                       {"command": "set_weight", "weight": weight,
                                        "reason": "failover bench"}, timeout=5)
                except OSError:
                    code = 0
                if code == 200:
                    break
                time.sleep(0.02)
            times.append(time.perf_counter() - t0)
            leader.launch()
            api.wait("both proxies on the new leader", lambda s: connected(s) == 2, 30)
            time.sleep(2)
        sent, failed = load.end()
        print(f"failover: leader SIGKILLed -> follower accepts a change, {rounds} times, "
              f"under load through 2 proxies")
        print("  seconds: " + "  ".join(f"{t:.2f}" for t in times)
              + f"   (median {statistics.median(times):.2f}, max {max(times):.2f})")
        print(f"  requests through the proxies: {sent}, failed: {failed}")
    finally:
        for _, p in procs:
            p.kill()
        for u in ups:
            if u.proc.poll() is None:
                u.kill()
        stop_demo_apps(base)


def stop_demo_apps(base):
    """The demo-app replicas run in their own process groups: stop them."""
    out = subprocess.run(["pgrep", "-f", "demo-app"], capture_output=True, text=True).stdout
    for pid in out.split():
        try:
            with open(f"/proc/{pid}/cwd"):
                pass
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd.startswith(base):
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    if sys.argv[1] == "propagation":
        propagation(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "failover":
        failover(sys.argv[2], sys.argv[3])
