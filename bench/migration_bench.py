#!/usr/bin/env python3
"""Live migration of petrel, and beside it the machine's limits and QEMU migrating the
same Linux guest the same way.

1. petrel, dirtier guest (tests/guest/dirtier.elf, --memory 1G, pages=235929 = 90% of RAM,
   every=1, i.e. a verification sweep of all pages after each pass of `rate` rewrites; a
   sweep takes ~0.3 s here): idle (rate=1) and dirtying (--rates, default 2048, 16384,
   65536 pages per pass), each over unix:PATH and tcp:127.0.0.1:PORT. Per run: the source
   `petrel run` (wait for "pass=1", then 1 s), the destination `petrel serve` + PUT
   /v1/migration/receive, then PUT /v1/migration/send {"destination"} on the source (default
   downtime 300 ms, max_rounds 30); GET /v1/migration on the source every 20 ms until
   `completed` or `failed`: total_ms, downtime_ms, rounds, bytes (petrel's own figures),
   the client's wall time from the send PUT to the first poll seeing `completed`, and the
   largest dirty_rate_bytes_per_s seen. The destination's guest must then print a line
   with bad=0 (every page it verified arrived). Effective throughput = bytes / total_ms.
2. Machine limits, by a small C program compiled with cc at run time: memcpy of 1 GiB
   between pre-faulted buffers, memset of a fresh (never touched) 1 GiB buffer (the page
   faults a destination pays to populate its RAM), and 1 GiB through a Unix stream
   socketpair and through TCP on 127.0.0.1 (a forked writer, 1 MiB writes, 4 MiB socket
   buffers as petrel sets).
3. QEMU vs petrel, idle Linux guest: the project's vmlinux (guest-cache/linux/build/
   vmlinux), 1 GiB, 1 vCPU, no initrd, --cmdline "console=ttyS0 root=/dev/nonexistent
   rootwait": both kernels reach "Waiting for root device" and idle there (timer ticks).
   QEMU/KVM cannot boot this kernel on a PVM host (it stops on the INT3 self-test; see
   docs/perf.md "Linux boot"), so QEMU runs it with TCG (-M microvm,acpi=off -cpu max) and
   petrel with KVM (PVM emulated mode); only the VMMs' migration paths are comparable.
   petrel boots once (minutes under the emulator) and is then migrated in a chain (each
   destination is the next source); QEMU boots afresh for each run (about a second) and
   migrates to `-incoming unix:PATH` via QMP `migrate`, polled with `query-migrate` (total-
   time, downtime, transferred ram). QEMU's default max-bandwidth (128 MiB/s in 7.2) is
   raised to 100 GiB/s so that neither side is throttled ("qemu (default bandwidth)" runs
   keep it); downtime-limit stays at its default 300 ms, like petrel's.

Repetitions (--reps, default 3) are interleaved: every configuration once, then again.
Figures only; nothing about time is asserted. Progress goes to stderr.

Usage: python3 bench/migration_bench.py [--petrel build-dev/petrel]
           [--guest build-dev/tests/guest/dirtier.elf] [--reps 3] [--rates 2048,16384,65536]
           [--no-dirtier] [--no-limits] [--no-linux] [--qemu PATH]
           [--vmlinux guest-cache/linux/build/vmlinux] [--json] [--json-out F]
"""
import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PAGE = 4096
RAM = 1 << 30
PAGES = 235929
LINUX_CMDLINE = "console=ttyS0 root=/dev/nonexistent rootwait"
LINUX_READY = "Waiting for root device"
LIMITS_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#define GIB (1ul << 30)
#define CHUNK (1ul << 20)
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9; }
static void bufs(int fd) { int n = 4 << 20; setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof n);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof n); }
static double pump(int wfd, int rfd) {
  char *buf = malloc(CHUNK); memset(buf, 1, CHUNK);
  double t0 = now();
  pid_t pid = fork();
  if (pid == 0) { close(rfd); for (size_t s = 0; s < GIB;) { ssize_t n = write(wfd, buf, CHUNK);
      if (n <= 0) _exit(1); s += n; } _exit(0); }
  close(wfd);
  size_t got = 0; ssize_t n;
  while ((n = read(rfd, buf, CHUNK)) > 0) got += n;
  waitpid(pid, NULL, 0);
  double t = now() - t0;
  close(rfd); free(buf);
  return got == GIB ? GIB / t / (1 << 20) : -1; }
int main(int argc, char **argv) {
  if (argc < 2) return 2;
  if (!strcmp(argv[1], "memcpy")) {
    char *a = malloc(GIB), *b = malloc(GIB); memset(a, 1, GIB); memset(b, 2, GIB);
    double t0 = now(); memcpy(b, a, GIB); double t = now() - t0;
    printf("%.1f\n", GIB / t / (1 << 20) + (b[GIB / 2] - 1)); return 0; }
  if (!strcmp(argv[1], "firsttouch")) {
    char *a = malloc(GIB); double t0 = now(); memset(a, 1, GIB); double t = now() - t0;
    printf("%.1f\n", GIB / t / (1 << 20) + (a[GIB / 2] - 1)); return 0; }
  if (!strcmp(argv[1], "unix")) { int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 1; bufs(sv[0]); bufs(sv[1]);
    printf("%.1f\n", pump(sv[0], sv[1])); return 0; }
  if (!strcmp(argv[1], "tcp")) {
    int l = socket(AF_INET, SOCK_STREAM, 0); struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &al)) return 1;
    int c = socket(AF_INET, SOCK_STREAM, 0); bufs(c); bufs(l);
    if (connect(c, (void *)&a, sizeof a)) return 1;
    int s = accept(l, NULL, NULL); close(l);
    printf("%.1f\n", pump(c, s)); return 0; }
  return 2; }
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def api(sock, method, target, body=None, timeout=60):
    conn = UnixHTTPConnection(sock, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else b""
        conn.request(method, target, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)
    finally:
        conn.close()


def wait_socket(path, proc, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{what}: no socket at {path}")


class Console:
    """Reads a process's stdout on a thread; keeps (perf_counter_ns, line) per line."""

    def __init__(self, proc):
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._run, args=(proc.stdout,), daemon=True).start()

    def _run(self, stream):
        for raw in iter(stream.readline, b""):
            with self.cond:
                self.lines.append((time.perf_counter_ns(),
                                   raw.decode(errors="replace").rstrip("\r\n")))
                self.cond.notify_all()
        with self.cond:
            self.lines.append((time.perf_counter_ns(), None))
            self.cond.notify_all()

    def wait_for(self, pred, start=0, timeout=120):
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    if self.lines[i][1] is None:
                        raise RuntimeError("console closed; last: " +
                                           repr([t for _, t in self.lines[-5:]]))
                    if pred(self.lines[i][1]):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("timed out waiting for a console line; last: " +
                                       repr([t for _, t in self.lines[-3:]]))
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


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Petrel:
    """One petrel process with its API socket and console."""

    def __init__(self, args, tmp, name, argv_tail):
        self.sock = os.path.join(tmp, f"{name}.sock")
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.err = open(self.log_path, "w")
        self.proc = subprocess.Popen([args.petrel] + argv_tail +
                                     ["--api-socket", self.sock, "--serial", "stdio"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.err)
        self.console = Console(self.proc)
        wait_socket(self.sock, self.proc, "petrel")

    def check_alive(self):
        """Raises with the exit status and the last log lines if the process ended."""
        if self.proc.poll() is not None:
            with open(self.log_path) as f:
                tail = f.read().splitlines()[-4:]
            raise RuntimeError(f"petrel exited with status {self.proc.returncode}; "
                               f"log: {tail}; console: "
                               f"{[t for _, t in self.console.lines[-3:]]}")

    def stop(self):
        stop_process(self.proc)
        self.err.close()


def petrel_migrate(args, tmp, src, transport, dst_name):
    """Migrates `src` to a new `petrel serve`; returns (figures, destination Petrel)."""
    src.check_alive()
    dst = Petrel(args, tmp, dst_name, ["serve"])
    try:
        addr = (f"unix:{os.path.join(tmp, dst_name + '.mig')}" if transport == "unix"
                else f"tcp:127.0.0.1:{free_tcp_port()}")
        status, body = api(dst.sock, "PUT", "/v1/migration/receive", {"listen": addr})
        if status != 202:
            raise RuntimeError(f"receive: {status} {body}")
        t0 = time.perf_counter_ns()
        status, body = api(src.sock, "PUT", "/v1/migration/send", {"destination": addr})
        if status != 202:
            raise RuntimeError(f"send: {status} {body}")
        max_dirty = 0
        last = body
        while True:
            try:
                status, st = api(src.sock, "GET", "/v1/migration", timeout=10)
            except (OSError, http.client.HTTPException) as e:
                raise RuntimeError(f"source went away before reporting completion: {e}; "
                                   f"last status {last}")
            t = time.perf_counter_ns()
            last = st
            max_dirty = max(max_dirty, st.get("dirty_rate_bytes_per_s") or 0)
            if st["phase"] == "completed":
                break
            if st["phase"] in ("failed", "cancelled"):
                raise RuntimeError(f"migration {st['phase']}: {st['error']}")
            time.sleep(0.02)
        fig = {"total_ms": st["total_ms"], "downtime_ms": st["downtime_ms"],
               "rounds": st["round"] + 1, "bytes": st["bytes"], "wall_ms": (t - t0) / 1e6,
               "max_dirty_mib_s": max_dirty / (1 << 20)}
        fig["mib_s"] = fig["bytes"] / (1 << 20) / (fig["total_ms"] / 1e3)
        return fig, dst
    except Exception:
        dst.stop()
        raise


def bench_dirtier(args, tmp, rate, transport):
    src = Petrel(args, tmp, "src", ["run", "--kernel", args.guest, "--memory", "1G",
                                    "--cmdline", f"pages={PAGES} rate={rate} every=1"])
    dst = None
    try:
        i = src.console.wait_for(lambda s: "pass=1 " in s)
        time.sleep(1.0)
        # the guest's own write rate, from its pass lines over the last second
        n = src.console.wait_for(lambda s: "pass=" in s, len(src.console.lines) - 1)
        passes = [t for t, s in src.console.lines[i:n + 1] if s and "pass=" in s]
        span = (passes[-1] - passes[0]) / 1e9
        guest_rate = (len(passes) - 1) * rate * PAGE / (1 << 20) / span if span > 0 else 0
        fig, dst = petrel_migrate(args, tmp, src, transport, "dst")
        k = dst.console.wait_for(lambda s: "pass=" in s, timeout=60)
        line = dst.console.lines[k][1]
        if not re.search(r"bad=0\b", line):
            raise RuntimeError(f"destination guest: {line}")
        fig["guest_write_mib_s"] = guest_rate
        return fig
    finally:
        src.stop()
        if dst:
            dst.stop()


def run_limits(tmp):
    src = os.path.join(tmp, "limits.c")
    exe = os.path.join(tmp, "limits")
    with open(src, "w") as f:
        f.write(LIMITS_C)
    subprocess.run(["cc", "-O2", "-o", exe, src], check=True)
    return {m: float(subprocess.run([exe, m], check=True, capture_output=True,
                                    text=True).stdout)
            for m in ("memcpy", "firsttouch", "unix", "tcp")}


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)
        self.buf = b""
        self._msg()
        self.cmd("qmp_capabilities")

    def _msg(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("QMP closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **arguments):
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            m = self._msg()
            if "return" in m:
                return m["return"]
            if "error" in m:
                raise RuntimeError(f"QMP {name}: {m['error']}")

    def close(self):
        self.sock.close()


def qemu_start(args, tmp, name, incoming=None):
    qmp = os.path.join(tmp, f"{name}.qmp")
    for p in (qmp,):
        if os.path.exists(p):
            os.unlink(p)
    argv = [args.qemu, "-M", "microvm,acpi=off", "-accel", "tcg", "-cpu", "max", "-m", "1G",
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "stdio", "-kernel", args.vmlinux, "-append", LINUX_CMDLINE,
            "-qmp", f"unix:{qmp},server=on,wait=off"]
    if incoming:
        argv += ["-incoming", incoming]
    err = open(os.path.join(tmp, f"{name}.log"), "w")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    con = Console(proc)
    wait_socket(qmp, proc, "qemu")
    return proc, con, Qmp(qmp), err, argv


def bench_qemu(args, tmp, bandwidth):
    src = qemu_start(args, tmp, "qsrc")
    dst = None
    try:
        src[1].wait_for(lambda s: LINUX_READY in s, timeout=120)
        time.sleep(1.0)
        path = os.path.join(tmp, "qemu.mig")
        if os.path.exists(path):
            os.unlink(path)
        dst = qemu_start(args, tmp, "qdst", incoming=f"unix:{path}")
        if bandwidth:
            src[2].cmd("migrate-set-parameters", **{"max-bandwidth": 100 << 30})
        t0 = time.perf_counter_ns()
        src[2].cmd("migrate", uri=f"unix:{path}")
        while True:
            st = src[2].cmd("query-migrate")
            if st.get("status") == "completed":
                t = time.perf_counter_ns()
                break
            if st.get("status") in ("failed", "cancelled"):
                raise RuntimeError(f"QEMU migration {st}")
            time.sleep(0.02)
        status = dst[2].cmd("query-status")
        ram = st.get("ram", {})
        fig = {"total_ms": st["total-time"], "downtime_ms": st["downtime"],
               "rounds": ram.get("dirty-sync-count"), "bytes": ram.get("total-transferred",
                                                                       ram.get("transferred")),
               "wall_ms": (t - t0) / 1e6, "dest_status": status.get("status")}
        fig["mib_s"] = fig["bytes"] / (1 << 20) / (fig["total_ms"] / 1e3)
        return fig
    finally:
        for q in (src, dst):
            if q:
                q[2].close()
                stop_process(q[0])
                q[3].close()


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def cell(values, fmt="{:.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def print_rows(results):
    print("| configuration | total ms | downtime ms | rounds | MiB sent | MiB/s (bytes/total) "
          "| client wall ms | guest writes MiB/s | max dirty rate MiB/s (petrel) | n |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, runs in results.items():
        ok = [r for r in runs if "error" not in r]
        errs = [r["error"] for r in runs if "error" in r]
        def col(k, fmt="{:.0f}", scale=1.0):
            return cell([r[k] * scale if r.get(k) is not None else None for r in ok], fmt)
        print(f"| {key} | {col('total_ms')} | {col('downtime_ms')} | {col('rounds')} | "
              f"{col('bytes', scale=1 / (1 << 20))} | {col('mib_s')} | {col('wall_ms')} | "
              f"{col('guest_write_mib_s')} | {col('max_dirty_mib_s')} | {len(ok)} |")
        for e in errs:
            print(f"|   failed: {e[:200]} | | | | | | | | | |")
    print("Cells: median (min–max) over the repetitions.")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--petrel", default=os.path.join(root, "build-dev", "petrel"))
    ap.add_argument("--guest", default=os.path.join(root, "build-dev", "tests", "guest",
                                                    "dirtier.elf"))
    ap.add_argument("--vmlinux", default=os.path.join(root, "guest-cache", "linux", "build",
                                                      "vmlinux"))
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64") or "")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rates", default="2048,16384,65536")
    ap.add_argument("--transports", default="unix,tcp")
    ap.add_argument("--no-dirtier", action="store_true")
    ap.add_argument("--no-limits", action="store_true")
    ap.add_argument("--no-linux", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "kernel": platform.release(),
            "cpus": os.cpu_count(), "loadavg_start": loadavg(), "petrel": args.petrel,
            "petrel_mtime": time.strftime("%Y-%m-%d %H:%M:%S",
                                          time.localtime(os.stat(args.petrel).st_mtime))}
    results = {}
    limits = []
    linux_src = None

    def record(key, fn):
        try:
            r = fn()
        except Exception as e:  # one failed run is reported, the others go on
            r = {"error": f"{type(e).__name__}: {e}"}
        log(f"  {key}: {r}")
        results.setdefault(key, []).append(r)
        return r

    with tempfile.TemporaryDirectory(prefix="petrel-mig-bench-") as tmp:
        try:
            if not args.no_linux:
                log("booting Linux in petrel (emulated: minutes)")
                linux_src = Petrel(args, tmp, "lx0", ["run", "--kernel", args.vmlinux,
                                                      "--memory", "1G", "--cmdline",
                                                      LINUX_CMDLINE])
                t0 = time.perf_counter_ns()
                linux_src.console.wait_for(lambda s: LINUX_READY in s, timeout=900)
                info["petrel_linux_boot_s"] = (time.perf_counter_ns() - t0) / 1e9
            for rep in range(args.reps):
                log(f"repetition {rep + 1} of {args.reps}, load average {loadavg()}")
                if not args.no_limits:
                    limits.append(run_limits(tmp))
                    log(f"  limits: {limits[-1]}")
                if not args.no_dirtier:
                    for rate in ["1"] + args.rates.split(","):
                        for tr in args.transports.split(","):
                            label = "idle (rate=1)" if rate == "1" else f"rate={rate}"
                            record(f"petrel dirtier {label}, {tr}",
                                   lambda: bench_dirtier(args, tmp, int(rate), tr))
                if linux_src:
                    def chain():
                        nonlocal linux_src
                        fig, dst = petrel_migrate(args, tmp, linux_src, "unix",
                                                  f"lx{rep + 1}")
                        linux_src.stop()
                        linux_src = dst
                        st, body = api(dst.sock, "GET", "/v1/vm/state")
                        fig["dest_status"] = body.get("state")
                        return fig
                    record("petrel Linux idle, unix", chain)
                if args.qemu and not args.no_linux:
                    record("QEMU (TCG) Linux idle, unix", lambda: bench_qemu(args, tmp, True))
                    record("QEMU (TCG) Linux idle, unix, default bandwidth",
                           lambda: bench_qemu(args, tmp, False))
        finally:
            if linux_src:
                linux_src.stop()
    info["loadavg_end"] = loadavg()
    out = {"info": info, "results": results, "limits": limits}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=2)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for k, v in info.items():
        print(f"{k}: {v}")
    print()
    print_rows(results)
    if limits:
        print()
        print("machine limits, MiB/s, median (min–max): memcpy 1 GiB " +
              cell([x["memcpy"] for x in limits]) + ", first touch of fresh 1 GiB (memset) " +
              cell([x.get("firsttouch") for x in limits]) + ", unix socketpair " +
              cell([x["unix"] for x in limits]) + ", tcp 127.0.0.1 " +
              cell([x["tcp"] for x in limits]))


if __name__ == "__main__":
    main()
