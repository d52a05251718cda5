#!/usr/bin/env python3
"""Memory balloon: how fast petrel takes 1 GiB back from a guest and gives it back, and the
host RSS before and after (docs/perf.md "Memory balloon"). Prints figures; asserts nothing
about time.

The guest is tests/guest/balloon.elf (a polling virtio-balloon driver) in a 2 GiB VM that
first writes its whole page pool, so the memory is resident on the host. Per repetition:
  inflate  PUT /v1/balloon {"target_bytes": 1 GiB} -> GET /v1/balloon shows actual == target
  deflate  PUT target 0 -> actual == 0, then until petrel's RSS is back within 5% (the guest
           writes every returned page: touch=1)
RSS is VmRSS of the petrel process (/proc/PID/status).

usage: bench/balloon_bench.py [--petrel build-dev/petrel] [--guest build-dev/tests/guest/balloon.elf]
                              [--reps 3] [--json]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time

GIB = 1 << 30


def api(sock_path, method, path, body=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    data = json.dumps(body) if body is not None else ""
    req = (f"{method} {path} HTTP/1.1\r\nHost: petrel\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n{data}")
    s.sendall(req.encode())
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    head, _, payload = out.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(payload) if payload.strip() else None


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def wait_until(pred, limit_s, step=0.01):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def one_run(args, tmp):
    sock = os.path.join(tmp, "api.sock")
    out = open(os.path.join(tmp, "console.txt"), "w+")
    proc = subprocess.Popen([args.petrel, "run", "--kernel", args.guest, "--memory", "2G",
                             "--balloon", "stats_interval=1s", "--cmdline", "touch=1",
                             "--api-socket", sock], stdout=out, stderr=subprocess.DEVNULL)
    try:
        def console():
            out.flush()
            with open(out.name) as f:
                return f.read()
        if not wait_until(lambda: "balloon ready" in console(), 60, 0.05):
            raise RuntimeError("the guest did not get ready:\n" + console())
        time.sleep(0.5)
        actual = lambda: api(sock, "GET", "/v1/balloon")[1]["actual_bytes"]
        rss_before = rss_bytes(proc.pid)
        t0 = time.monotonic()
        api(sock, "PUT", "/v1/balloon", {"target_bytes": GIB})
        if not wait_until(lambda: actual() == GIB, 120):
            raise RuntimeError("inflate did not finish")
        inflate_s = time.monotonic() - t0
        time.sleep(0.2)
        rss_inflated = rss_bytes(proc.pid)
        t1 = time.monotonic()
        api(sock, "PUT", "/v1/balloon", {"target_bytes": 0})
        if not wait_until(lambda: actual() == 0, 120):
            raise RuntimeError("deflate did not finish")
        deflate_s = time.monotonic() - t1
        wait_until(lambda: rss_bytes(proc.pid) >= rss_before * 0.95, 120, 0.05)
        refill_s = time.monotonic() - t1
        return {"rss_before": rss_before, "rss_inflated": rss_inflated,
                "rss_after": rss_bytes(proc.pid), "inflate_s": inflate_s,
                "deflate_s": deflate_s, "refill_s": refill_s,
                "reclaimed": rss_before - rss_inflated}
    finally:
        proc.terminate()  # the guest ignores the shutdown: a second SIGTERM stops it now
        time.sleep(0.3)
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)
        out.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--petrel", default="build-dev/petrel")
    ap.add_argument("--guest", default="build-dev/tests/guest/balloon.elf")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs = []
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="petrel-balloon-bench-") as tmp:
            runs.append(one_run(args, tmp))
    if args.json:
        print(json.dumps(runs, indent=2))
        return
    med = lambda k: statistics.median(r[k] for r in runs)
    mib = lambda b: b / (1 << 20)
    print(f"runs: {len(runs)} (median, min-max); load {os.getloadavg()[0]:.1f}")
    for key, label, fmt in [("inflate_s", "inflate 1 GiB: PUT -> actual == target", "s"),
                            ("deflate_s", "deflate: PUT 0 -> actual == 0", "s"),
                            ("refill_s", "deflate -> RSS back within 5% (guest rewrites)", "s"),
                            ("rss_before", "petrel RSS before", "MiB"),
                            ("rss_inflated", "petrel RSS with 1 GiB in the balloon", "MiB"),
                            ("rss_after", "petrel RSS after deflate + rewrite", "MiB"),
                            ("reclaimed", "RSS given back by the inflate", "MiB")]:
        vals = [r[key] for r in runs]
        conv = mib if fmt == "MiB" else (lambda v: v)
        print(f"  {label:<50} {conv(med(key)):8.2f} {fmt}  "
              f"({conv(min(vals)):.2f}-{conv(max(vals)):.2f})")


if __name__ == "__main__":
    main()
