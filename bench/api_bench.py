#!/usr/bin/env python3
"""Control API latency: petrel's HTTP/1.1 API against QEMU's QMP, both over a Unix socket,
both with a running guest whose vCPU spins.

Operations, timed per request from just before send to the last byte of the answer
(time.perf_counter_ns, in the client):
  info          petrel GET /v1/vm                QEMU query-status
  pause/resume  petrel PUT /v1/vm/pause, then    QEMU stop, then cont
                PUT /v1/vm/resume
Each client keeps one keep-alive connection (one QMP monitor each for QEMU) and runs in its
own process (multiprocessing, fork), so Python's GIL does not serialise 16 clients; all
clients start together at a barrier after a short warm-up. With many clients, pause and
resume race: petrel answers 409 when another client got there first (counted separately;
the latency figures cover all answers). QEMU's stop and cont succeed in any state.

Client floor: the same client code against a trivial Python server (one forked process per
connection) answering every HTTP request with a fixed 200 JSON body, and every QMP-style
line with {"return": {}}: what the client, the socket and the scheduler cost without a VMM.

Figures only; nothing is asserted. Progress goes to stderr.

petrel runs once per --pvm-modes value (default: auto, i.e. native for this guest, and
emulated, the mode QEMU's real-mode guest runs in on a PVM host). Everything is repeated
--rounds times (a fresh VMM each time), interleaved, and the samples merged.

Usage: python3 bench/api_bench.py [--petrel build-dev/petrel]
           [--guest build-dev/tests/guest/kbd_ignore.elf] [--qemu PATH | --no-qemu]
           [--no-floor] [--pvm-modes auto,emulated] [--rounds 3] [--requests 2000]
           [--clients 16] [--requests-per-client 300] [--json] [--json-out F]
"""
import argparse
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HTTP_FLOOR_BODY = json.dumps({
    "boot_count": 1, "exec_mode": "PVM native", "memory_bytes": 268435456,
    "name": "petrel", "pid": 1, "started_at": "2026-11-22T06:02:07.865Z",
    "state": "running", "uptime_seconds": 1.033553985, "vcpus": 1,
    "version": "0.1.0"}).encode()  # the size of petrel's GET /v1/vm answer
START_TIMEOUT_S = 20.0
IO_TIMEOUT_S = 30.0


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Clients: one connection each, blocking, minimal parsing (no http.client: less overhead).


class HttpClient:
    """HTTP/1.1 keep-alive over AF_UNIX. Answers must carry Content-Length (petrel's do)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(IO_TIMEOUT_S)
        self.sock.connect(path)
        self.buf = b""

    def request(self, method, target):
        """Returns the HTTP status code."""
        length = "Content-Length: 0\r\n" if method == "PUT" else ""
        self.sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{length}\r\n"
                          .encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        size = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                size = int(value)
        while len(self.buf) < size:
            self._fill()
        self.buf = self.buf[size:]
        return status

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def close(self):
        self.sock.close()


class QmpClient:
    """QMP over AF_UNIX: greeting, capabilities handshake, then one command at a time.
    Asynchronous events (STOP, RESUME: sent to every monitor) are skipped."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(IO_TIMEOUT_S)
        self.sock.connect(path)
        self.buf = b""
        greeting = self._read_msg()
        if "QMP" not in greeting:
            raise ConnectionError(f"not a QMP greeting: {greeting}")
        if self.command("qmp_capabilities") != 200:
            raise ConnectionError("qmp_capabilities failed")

    def command(self, name):
        """Returns 200 for {"return": ...}, 400 for {"error": ...} (HTTP-like, for the table)."""
        self.sock.sendall(json.dumps({"execute": name}).encode() + b"\r\n")
        while True:
            msg = self._read_msg()
            if "return" in msg:
                return 200
            if "error" in msg:
                return 400

    def _read_msg(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("QMP closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


# Per protocol: how to connect and what each verb sends.
VERBS = {
    "http": {"info": ("GET", "/v1/vm"), "pause": ("PUT", "/v1/vm/pause"),
             "resume": ("PUT", "/v1/vm/resume")},
    "qmp": {"info": "query-status", "pause": "stop", "resume": "cont"},
}


def do_verb(proto, client, verb):
    if proto == "http":
        return client.request(*VERBS["http"][verb])
    return client.command(VERBS["qmp"][verb])


def connect(proto, path):
    return HttpClient(path) if proto == "http" else QmpClient(path)


def client_worker(proto, path, op, count, warmup, barrier, results):
    """One client process: connect, warm up, wait for the others, run `count` iterations.
    Puts {verb: [(latency_ns, status), ...], "pair": [ns...], "t0", "t1"} on `results`."""
    try:
        client = connect(proto, path)
        verbs = ["info"] if op == "info" else ["pause", "resume"]
        for _ in range(warmup):
            for verb in verbs:
                do_verb(proto, client, verb)
        out = {verb: [] for verb in verbs}
        out["pair"] = []
        barrier.wait(timeout=60)
        clock = time.perf_counter_ns
        t0 = clock()
        for _ in range(count):
            pair = 0
            for verb in verbs:
                start = clock()
                status = do_verb(proto, client, verb)
                ns = clock() - start
                out[verb].append((ns, status))
                pair += ns
            if len(verbs) > 1:
                out["pair"].append(pair)
        out["t0"], out["t1"] = t0, clock()
        client.close()
        results.put(out)
    except Exception as e:  # reported by the parent; a crashed worker must not hang it
        results.put({"error": f"{type(e).__name__}: {e}"})
        barrier.abort()


def run_clients(proto, paths, op, clients, count, warmup):
    """Runs `clients` processes (client i uses paths[i % len(paths)]); merges their samples."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(clients)
    results = ctx.Queue()
    procs = [ctx.Process(target=client_worker,
                         args=(proto, paths[i % len(paths)], op, count, warmup, barrier,
                               results)) for i in range(clients)]
    for p in procs:
        p.start()
    outs = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise RuntimeError(f"client failed: {errors[0]}")
    merged = {}
    for o in outs:
        for key, values in o.items():
            if key not in ("t0", "t1"):
                merged.setdefault(key, []).extend(values)
    wall_ns = max(o["t1"] for o in outs) - min(o["t0"] for o in outs)
    return merged, wall_ns


# ---------------------------------------------------------------------------------------
# Servers under test


def wait_for_socket(path, proc, what):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        if os.path.exists(path):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                s.close()
                return
            except OSError:
                pass
        time.sleep(0.02)
    raise RuntimeError(f"{what}: no socket at {path} after {START_TIMEOUT_S:.0f} s")


def stop_process(proc):
    if proc.poll() is None:
        # petrel: the first SIGTERM asks the guest to shut down, a second stops it now.
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_ticks(pid):
    """utime + stime of a process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_cpu_share(pid, seconds=1.0):
    """CPU used by the VMM while no request is made: shows the guest's vCPU is busy."""
    t0 = cpu_ticks(pid)
    time.sleep(seconds)
    return (cpu_ticks(pid) - t0) / os.sysconf("SC_CLK_TCK") / seconds


def write_spin_firmware(tmpdir):
    """A 64 KiB -bios image whose reset vector (16 bytes from its end) is `jmp $` (eb fe):
    the vCPU spins in real mode forever, like petrel's kbd_ignore.elf guest spins."""
    image = bytearray(b"\xf4" * 65536)
    image[-16:-14] = b"\xeb\xfe"
    path = os.path.join(tmpdir, "spin-fw.bin")
    with open(path, "wb") as f:
        f.write(image)
    return path


def floor_server(path, proto):
    """The floor: accept, fork one process per connection, answer every request at once."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    http_answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(HTTP_FLOOR_BODY)) + HTTP_FLOOR_BODY
    while True:
        conn, _ = listener.accept()
        if os.fork() != 0:
            conn.close()
            continue
        listener.close()
        try:
            serve_floor_connection(conn, proto, http_answer)
        except OSError:
            pass  # e.g. the start-up probe, which connects and closes at once
        os._exit(0)


def serve_floor_connection(conn, proto, http_answer):
    buf = b""
    if proto == "qmp":
        conn.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
        if proto == "qmp":
            n = buf.count(b"\n")
            buf = buf[buf.rfind(b"\n") + 1:]
            if n:
                conn.sendall(b'{"return": {}}\r\n' * n)
            continue
        while b"\r\n\r\n" in buf:  # requests carry no body but Content-Length: 0
            _, buf = buf.split(b"\r\n\r\n", 1)
            conn.sendall(http_answer)


# ---------------------------------------------------------------------------------------
# Statistics and output


def pct(sorted_values, p):
    """Nearest rank."""
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latencies(values):
    return sorted(v if isinstance(v, int) else v[0] for v in values)


def summarize(rounds):
    """rounds: [(samples, wall_ns)] of one configuration, one per round; merged."""
    merged = {}
    for samples, _ in rounds:
        for verb, values in samples.items():
            merged.setdefault(verb, []).extend(values)
    rows = {}
    for verb, values in merged.items():
        ns = latencies(values)
        if not ns:
            continue
        statuses = {}
        for v in values:
            if not isinstance(v, int):
                statuses[str(v[1])] = statuses.get(str(v[1]), 0) + 1
        round_p50 = [pct(latencies(s[verb]), 50) / 1e3 for s, _ in rounds]
        by_status = {code: pct(sorted(v[0] for v in values if str(v[1]) == code), 50) / 1e3
                     for code in statuses}
        rows[verb] = {"n": len(ns), "p50_us": pct(ns, 50) / 1e3, "p99_us": pct(ns, 99) / 1e3,
                      "max_us": ns[-1] / 1e3, "mean_us": sum(ns) / len(ns) / 1e3,
                      "round_p50_us": round_p50, "statuses": statuses,
                      "p50_by_status_us": by_status}
    requests = sum(len(v) for k, v in merged.items() if k != "pair")
    wall_ns = sum(w for _, w in rounds)
    return {"verbs": rows, "requests_per_s": requests / (wall_ns / 1e9)}


def print_table(rows):
    print(f"{'target':<24} {'cl':>3} {'verb':<7} {'n':>6} {'p50 µs':>8} {'p99 µs':>8} "
          f"{'max µs':>8} {'mean µs':>8} {'p50/round µs':>15} {'req/s':>7}  answers")
    for r in rows:
        first = True
        for verb in ("info", "pause", "resume", "pair"):
            v = r["summary"]["verbs"].get(verb)
            if v is None:
                continue
            answers = " ".join(f"{k}:{n}" for k, n in sorted(v["statuses"].items()))
            if len(v["statuses"]) > 1:
                answers += " (p50 " + ", ".join(
                    f"{k}: {us:.0f}" for k, us in sorted(v["p50_by_status_us"].items())) + ")"
            spread = f"{min(v['round_p50_us']):.0f}-{max(v['round_p50_us']):.0f}"
            rate = f"{r['summary']['requests_per_s']:7.0f}" if first else " " * 7
            print(f"{r['target']:<24} {r['clients']:>3} {verb:<7} {v['n']:>6} "
                  f"{v['p50_us']:>8.1f} {v['p99_us']:>8.1f} {v['max_us']:>8.1f} "
                  f"{v['mean_us']:>8.1f} {spread:>15} {rate}  {answers}")
            first = False
    print("pair = pause + resume by the same client, back to back. p50/round: lowest and "
          "highest median of the rounds. req/s: all clients together. QMP answers: 200 = "
          "{\"return\"}, 400 = {\"error\"}. Latency covers all answers (409s included); with "
          "mixed answers, the median per status follows in parentheses. final_resume_status: "
          "what a resume got after each race (petrel 409: the VM was running).")


# ---------------------------------------------------------------------------------------


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def measure(target, proto, paths, args, results):
    """The four configurations of one target: info and pause/resume, 1 and N clients.
    Appends each configuration's raw samples to results[(target, op, clients)]."""
    for op in ("info", "pause_resume"):
        for clients, count, warmup in ((1, args.requests, 50),
                                       (args.clients, args.requests_per_client, 10)):
            log(f"{target}: {op}, {clients} client(s) x {count}")
            samples, wall_ns = run_clients(proto, paths, op, clients, count, warmup)
            results.setdefault((target, op, clients), []).append((samples, wall_ns))
            if op == "pause_resume":
                status = ensure_running(proto, paths[0])
                results.setdefault(("final resume", target, clients), []).append(status)


def ensure_running(proto, path):
    """After a race: the last request answered was a resume, so the VM should run. Returns
    what the final resume got (petrel: 409 = it was running, 200 = it was not)."""
    client = connect(proto, path)
    status = do_verb(proto, client, "resume")
    client.close()
    return status


def bench_petrel(args, tmpdir, results, info, pvm_mode):
    sock = os.path.join(tmpdir, "petrel.sock")
    if os.path.exists(sock):
        os.unlink(sock)  # left by the previous round if petrel did not remove it
    err = open(os.path.join(tmpdir, "petrel.log"), "w")
    argv = [args.petrel, "run", "--kernel", args.guest, "--api-socket", sock,
            "--serial", "none", "--memory", "256M", "--pvm-mode", pvm_mode]
    info[f"petrel_{pvm_mode}_argv"] = " ".join(argv).replace(tmpdir, "<tmp>")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err)
    try:
        wait_for_socket(sock, proc, "petrel")
        time.sleep(0.3)
        info.setdefault(f"petrel_{pvm_mode}_idle_cpu", []).append(idle_cpu_share(proc.pid))
        measure(f"petrel HTTP ({pvm_mode})", "http", [sock], args, results)
    finally:
        stop_process(proc)
        err.close()
    with open(os.path.join(tmpdir, "petrel.log")) as f:
        for line in f:
            if "starting" in line and "vCPU" in line:
                info[f"petrel_{pvm_mode}_mode"] = line.split("vCPU(s), ", 1)[-1].strip()


def bench_qemu(args, tmpdir, results, info):
    firmware = write_spin_firmware(tmpdir)
    socks = [os.path.join(tmpdir, f"qmp{i}.sock") for i in range(args.clients)]
    for s in socks:
        if os.path.exists(s):
            os.unlink(s)
    argv = [args.qemu, "-accel", "kvm", "-machine", "microvm", "-nodefaults",
            "-no-user-config", "-display", "none", "-m", "256M", "-bios", firmware]
    for s in socks:
        argv += ["-qmp", f"unix:{s},server=on,wait=off"]
    info["qemu_argv"] = (" ".join(argv[:len(argv) - 2 * len(socks) + 2]) +
                         f" (x{len(socks)} -qmp, qmp0..qmp{len(socks) - 1})"
                         ).replace(tmpdir, "<tmp>")
    err = open(os.path.join(tmpdir, "qemu.log"), "w")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err)
    try:
        for s in socks:
            wait_for_socket(s, proc, "qemu")
        time.sleep(0.3)
        info.setdefault("qemu_idle_cpu", []).append(idle_cpu_share(proc.pid))
        measure("QEMU QMP", "qmp", socks, args, results)
    finally:
        stop_process(proc)
        err.close()


def bench_floor(args, tmpdir, results, proto):
    sock = os.path.join(tmpdir, f"floor-{proto}.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--floor-server",
                             sock, "--floor-proto", proto])
    try:
        wait_for_socket(sock, proc, "floor server")
        measure(f"floor {proto} (Python)", proto, [sock], args, results)
    finally:
        stop_process(proc)


def qemu_version(qemu):
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--petrel", default=os.path.join(root, "build-dev", "petrel"))
    ap.add_argument("--guest", default=os.path.join(root, "build-dev", "tests", "guest",
                                                    "kbd_ignore.elf"),
                    help="a petrel guest that runs forever (its vCPU busy)")
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64") or "")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--requests", type=int, default=2000, help="iterations with 1 client")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests-per-client", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3,
                    help="repeat everything, interleaved by target; samples are merged")
    ap.add_argument("--pvm-modes", default="auto,emulated",
                    help="petrel --pvm-mode values to measure, comma-separated")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--json-out", help="also write the figures as JSON to this file")
    ap.add_argument("--floor-server", help=argparse.SUPPRESS)
    ap.add_argument("--floor-proto", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor_server:
        floor_server(args.floor_server, args.floor_proto)
        return

    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "kernel": platform.release(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg_start": loadavg(), "requests": args.requests, "clients": args.clients,
            "requests_per_client": args.requests_per_client,
            "petrel_mtime": time.strftime("%Y-%m-%d %H:%M:%S",
                                          time.localtime(os.stat(args.petrel).st_mtime))}
    qemu = args.qemu if not args.no_qemu else ""
    if qemu:
        info["qemu_version"] = qemu_version(qemu)
    results = {}
    with tempfile.TemporaryDirectory(prefix="petrel-api-bench-") as tmpdir:
        for i in range(args.rounds):
            log(f"round {i + 1} of {args.rounds}, load average {loadavg()}")
            for mode in args.pvm_modes.split(","):
                bench_petrel(args, tmpdir, results, info, mode)
            if qemu:
                bench_qemu(args, tmpdir, results, info)
            if not args.no_floor:
                bench_floor(args, tmpdir, results, "http")
                if qemu:
                    bench_floor(args, tmpdir, results, "qmp")
    info["loadavg_end"] = loadavg()
    rows = [{"target": t, "op": op, "clients": c, "summary": summarize(rounds)}
            for (t, op, c), rounds in results.items() if t != "final resume"]
    info["final_resume_status"] = {f"{target}, {c} client(s)": statuses
                                   for (t, target, c), statuses in results.items()
                                   if t == "final resume"}

    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"info": info, "results": rows}, f, indent=2)
    if args.json:
        print(json.dumps({"info": info, "results": rows}, indent=2))
        return
    for key, value in info.items():
        if key.endswith("_idle_cpu"):
            value = ", ".join(f"{100 * v:.0f}%" for v in value) + \
                " of a CPU with no requests (the guest's vCPU), per round"
        print(f"{key}: {value}")
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
