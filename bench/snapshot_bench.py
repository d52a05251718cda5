#!/usr/bin/env python3
"""Snapshot and restore times of petrel with a guest whose RAM is mostly written.

Guest: tests/guest/dirtier.elf with pages = min(90% of RAM, RAM - 40 MiB, 262144) (the
dirtier uses at most 262144 pages = 1 GiB, and its data starts ~34 MiB into RAM), rate=64,
every=1: after set-up it verifies every page after each pass of 64 rewrites and prints
"dirtier pass=P ... bad=B" each time, so every console line after a restore means the
restored guest has read all its data pages (again).

Per repetition, for each size (interleaved: 256M, 1G, 4G, then the next repetition):
  1. petrel run (console on a pipe, read by a thread that timestamps every line); wait for
     the line "pass=1" (set-up and one full verification done), then one more second.
  2. PUT /v1/vm/pause, then PUT /v1/vm/snapshot {"path": DIR}: petrel's duration_ms,
     memory_bytes_written, state_bytes, and the wall time of the PUT in the client; the
     memory file's allocated size (st_blocks). The source is then stopped (SIGTERM).
  3. petrel restore DIR --api-socket S --serial stdio, twice: "warm" (the snapshot's pages
     still in the page cache from writing them) and "cold" (after sync and
     echo 3 > /proc/sys/vm/drop_caches, root only). Timed from just before the fork+exec
     (time.perf_counter_ns) to: the API socket answering GET /v1/vm/state with "running"
     (polled every 2 ms), the first and the second console line of the restored guest
     (the second always follows a complete verification sweep of the restored RAM), and
     each line's bad=0 is checked.
  4. dd beside it, on the same file system as DIR: 1 GiB sequential write (bs=1M,
     conv=fdatasync) and, after drop_caches, read back (bs=1M), once per repetition.

Figures only; nothing is asserted except that the guest verified its pages (bad=0).
Progress goes to stderr.

Usage: python3 bench/snapshot_bench.py [--petrel build-dev/petrel]
           [--guest build-dev/tests/guest/dirtier.elf] [--sizes 256M,1G,4G]
           [--reps 3] [--dir /var/tmp/petrel-snap-bench] [--no-drop-caches]
           [--json] [--json-out F]
"""
import argparse
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PAGE = 4096
MAX_PAGES = 262144
START_TIMEOUT_S = 120.0


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def dirtier_pages(ram):
    return min(MAX_PAGES, int(ram * 0.9) // PAGE, (ram - (40 << 20)) // PAGE)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=600):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def api(sock, method, target, body=None, timeout=600):
    """One request on a fresh connection. Returns (status, parsed JSON or None)."""
    conn = UnixHTTPConnection(sock, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else b""
        conn.request(method, target, body=data,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)
    finally:
        conn.close()


class Console:
    """Reads a VMM's stdout on a thread; keeps (perf_counter_ns, line) for every line."""

    def __init__(self, proc):
        self.lines = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, args=(proc.stdout,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        for raw in iter(stream.readline, b""):
            t = time.perf_counter_ns()
            with self.cond:
                self.lines.append((t, raw.decode(errors="replace").rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.lines.append((time.perf_counter_ns(), None))  # EOF
            self.cond.notify_all()

    def wait_for(self, pred, start_index=0, timeout=START_TIMEOUT_S):
        """Returns the index of the first line at or after start_index matching pred."""
        deadline = time.monotonic() + timeout
        i = start_index
        with self.cond:
            while True:
                while i < len(self.lines):
                    text = self.lines[i][1]
                    if text is None:
                        raise RuntimeError("console closed; last lines: " +
                                           repr([t for _, t in self.lines[-5:]]))
                    if pred(text):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("timed out waiting for a console line")
                self.cond.wait(left)


def stop_process(proc):
    if proc.poll() is None:
        # petrel: the first SIGTERM asks the guest to shut down, a second stops it now.
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_running(sock, proc, timeout=START_TIMEOUT_S):
    """Polls GET /v1/vm/state every 2 ms; returns perf_counter_ns of the first "running"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"petrel exited with status {proc.returncode}")
        try:
            status, body = api(sock, "GET", "/v1/vm/state", timeout=5)
            if status == 200 and body.get("state") == "running":
                return time.perf_counter_ns()
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.002)
    raise RuntimeError("petrel: not running in time")


def check_line(text):
    m = re.search(r"bad=(\d+)", text)
    if not m or m.group(1) != "0":
        raise RuntimeError(f"guest reported a problem: {text}")


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def snapshot_once(args, ram, tmp, snapdir):
    pages = dirtier_pages(ram)
    sock = os.path.join(tmp, "src.sock")
    err = open(os.path.join(tmp, "src.log"), "w")
    argv = [args.petrel, "run", "--kernel", args.guest, "--memory", str(ram),
            "--cmdline", f"pages={pages} rate=64 every=1", "--serial", "stdio",
            "--api-socket", sock]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=err)
    res = {"pages": pages, "touched_bytes": pages * PAGE}
    try:
        con = Console(proc)
        i = con.wait_for(lambda s: "pass=1 " in s)
        check_line(con.lines[i][1])
        time.sleep(1.0)
        status, body = api(sock, "PUT", "/v1/vm/pause")
        if status != 200:
            raise RuntimeError(f"pause: {status} {body}")
        t0 = time.perf_counter_ns()
        status, body = api(sock, "PUT", "/v1/vm/snapshot", {"path": snapdir})
        t1 = time.perf_counter_ns()
        if status != 200:
            raise RuntimeError(f"snapshot: {status} {body}")
        res.update(create_wall_ms=(t1 - t0) / 1e6, create_api_ms=body["duration_ms"],
                   memory_bytes_written=body["memory_bytes_written"],
                   state_bytes=body["state_bytes"])
        st = os.stat(os.path.join(snapdir, "memory"))
        res["memory_file_size"] = st.st_size
        res["memory_file_allocated"] = st.st_blocks * 512
    finally:
        stop_process(proc)
        err.close()
    return res


def restore_once(args, tmp, snapdir):
    sock = os.path.join(tmp, "dst.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    err = open(os.path.join(tmp, "dst.log"), "w")
    argv = [args.petrel, "restore", snapdir, "--api-socket", sock, "--serial", "stdio"]
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=err)
    try:
        con = Console(proc)
        t_run = wait_running(sock, proc)
        i1 = con.wait_for(lambda s: "pass=" in s)
        i2 = con.wait_for(lambda s: "pass=" in s, i1 + 1)
        for i in (i1, i2):
            check_line(con.lines[i][1])
        return {"running_ms": (t_run - t0) / 1e6,
                "line1_ms": (con.lines[i1][0] - t0) / 1e6,
                "line2_ms": (con.lines[i2][0] - t0) / 1e6}
    finally:
        stop_process(proc)
        err.close()


def dd_figures(directory, drop):
    path = os.path.join(directory, "dd-test")
    t0 = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=1024",
                    "conv=fdatasync"], check=True, capture_output=True)
    w = time.perf_counter() - t0
    if drop:
        drop_caches()
    t0 = time.perf_counter()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M"], check=True,
                   capture_output=True)
    r = time.perf_counter() - t0
    os.unlink(path)
    return {"write_mib_s": 1024 / w, "read_mib_s": 1024 / r}


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def fmt_cell(values, fmt="{:.0f}"):
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def print_table(sizes, samples, dd):
    cols = [("create: API duration_ms", "create_api_ms"),
            ("create: PUT wall ms", "create_wall_ms"),
            ("memory_bytes_written MiB", "memory_bytes_written"),
            ("memory file on disk MiB", "memory_file_allocated"),
            ("state file bytes", "state_bytes"),
            ("create MiB/s (written / API time)", "create_mib_s")]
    for kind in ("warm", "cold"):
        cols += [(f"restore {kind}: exec → running ms", f"{kind}_running_ms"),
                 (f"restore {kind}: exec → 1st line ms", f"{kind}_line1_ms"),
                 (f"restore {kind}: exec → 2nd line ms", f"{kind}_line2_ms")]
    print("| | " + " | ".join(sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    print("| dirtier pages (touched MiB) | " + " | ".join(
        f"{samples[s][0]['pages']} ({samples[s][0]['touched_bytes'] >> 20})" for s in sizes)
        + " |")
    for title, key in cols:
        cells = []
        for s in sizes:
            vals = [r[key] for r in samples[s] if key in r]
            if not vals:
                cells.append("—")
                continue
            if key in ("memory_bytes_written", "memory_file_allocated"):
                vals = [v / (1 << 20) for v in vals]
            cells.append(fmt_cell(vals))
        print(f"| {title} | " + " | ".join(cells) + " |")
    if dd:
        print()
        print(f"dd on the same file system, 1 GiB: write (conv=fdatasync) "
              f"{fmt_cell([d['write_mib_s'] for d in dd])} MiB/s, read "
              f"{fmt_cell([d['read_mib_s'] for d in dd])} MiB/s (median (min–max)).")
    print("Cells: median (min–max) of the repetitions.")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--petrel", default=os.path.join(root, "build-dev", "petrel"))
    ap.add_argument("--guest", default=os.path.join(root, "build-dev", "tests", "guest",
                                                    "dirtier.elf"))
    ap.add_argument("--sizes", default="256M,1G,4G")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp/petrel-snap-bench",
                    help="where snapshots are written (created; emptied afterwards)")
    ap.add_argument("--no-drop-caches", action="store_true",
                    help="skip the cold restores and the cold dd read (needs root)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    drop = not args.no_drop_caches
    if drop and os.geteuid() != 0:
        log("not root: no drop_caches, cold restores skipped")
        drop = False
    sizes = args.sizes.split(",")
    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "kernel": platform.release(),
            "cpus": os.cpu_count(), "loadavg_start": loadavg(), "dir": args.dir,
            "petrel": args.petrel, "petrel_mtime": time.strftime(
                "%Y-%m-%d %H:%M:%S", time.localtime(os.stat(args.petrel).st_mtime))}
    os.makedirs(args.dir, exist_ok=True)
    samples = {s: [] for s in sizes}
    dd = []
    with tempfile.TemporaryDirectory(prefix="petrel-snap-bench-") as tmp:
        for rep in range(args.reps):
            log(f"repetition {rep + 1} of {args.reps}, load average {loadavg()}")
            for size in sizes:
                ram = parse_size(size)
                snapdir = os.path.join(args.dir, f"snap-{size}")
                log(f"  {size}: run, snapshot")
                r = snapshot_once(args, ram, tmp, snapdir)
                r["create_mib_s"] = r["memory_bytes_written"] / (1 << 20) / (
                    r["create_api_ms"] / 1e3)
                log(f"  {size}: restore (warm)")
                r.update({f"warm_{k}": v for k, v in restore_once(args, tmp, snapdir).items()})
                if drop:
                    drop_caches()
                    log(f"  {size}: restore (cold, page cache dropped)")
                    r.update({f"cold_{k}": v
                              for k, v in restore_once(args, tmp, snapdir).items()})
                for name in ("state", "memory"):
                    os.unlink(os.path.join(snapdir, name))
                os.rmdir(snapdir)
                log(f"  {size}: {r}")
                samples[size].append(r)
            log("  dd")
            dd.append(dd_figures(args.dir, drop))
    info["loadavg_end"] = loadavg()
    out = {"info": info, "samples": samples, "dd": dd}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=2)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for k, v in info.items():
        print(f"{k}: {v}")
    print()
    print_table(sizes, samples, dd)


if __name__ == "__main__":
    main()
