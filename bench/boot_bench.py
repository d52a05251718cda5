#!/usr/bin/env python3
"""Boot latency and VMM memory overhead of petrel, side by side with QEMU.

For every run this measures, for petrel and for QEMU in the same invocation (interleaved,
so drift of the machine affects both alike):

  1. exec-to-first-serial-byte: time.perf_counter_ns() just before the VMM is spawned
     (fork + exec, stdout a pipe) until the first byte of the guest's COM1 output can be
     read from that pipe;
  2. resident memory of the VMM process beyond guest RAM, sampled from /proc/<pid>/status,
     /proc/<pid>/smaps_rollup and /proc/<pid>/smaps while the guest is running. Guest RAM is
     the one anonymous mapping whose size is the --memory size; its Rss is subtracted.

petrel runs the test guests of the project (hello.elf for the timing; compute.elf with a
huge iteration count for the memory sample, since hello exits at once), in its default
mode (on a PVM host: PVM native) and, as a second row, in --pvm-mode emulated.

QEMU cannot load petrel's ELF guests, so it runs a trivial guest generated at run time: a
64 KiB firmware image (-bios) whose reset vector writes one byte to port 0x3f8 and halts
forever. QEMU is tried with -accel kvm first and falls back to -accel tcg; -machine microvm
first, then q35. The table says what actually ran.

This is a benchmark, not a test: it prints figures and asserts nothing about time. It
fails only when a VMM cannot be run at all or the /proc parsing finds no guest RAM.

Standard library only. Linux only (/proc).
"""

import argparse
import json
import math
import os
import platform
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_BYTE_TIMEOUT_S = 60.0   # emulated-mode / TCG guests are slow but not that slow
PROBE_TIMEOUT_S = 10.0        # QEMU's firmware prints within milliseconds when it works
HUGE_ITERATIONS = 10**12      # compute guest: ~15 min natively; we kill it long before


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_size(text):
    m = re.fullmatch(r"(\d+)([KMGT]?)", text.strip(), re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 256M)")
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(m.group(1)) * mult[m.group(2).upper()]


# ---------------------------------------------------------------------------------------
# /proc sampling


def read_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            value = value.strip()
            if value.endswith(" kB"):
                fields[key] = int(value[:-3])
            elif key == "Threads":
                fields[key] = int(value)
    return fields


def read_smaps_rollup(pid):
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"^(\w+):\s+(\d+) kB", line)
            if m:
                fields[m.group(1)] = int(m.group(2))
    return fields


MAP_HEADER = re.compile(
    r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) [0-9a-f]+ [0-9a-f]+:[0-9a-f]+ (\d+)\s*(.*)$")


def read_smaps(pid):
    """List of mappings: dict(start, end, perms, inode, path, and every 'X: n kB' field)."""
    maps = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = MAP_HEADER.match(line)
            if m:
                cur = {"start": int(m.group(1), 16), "end": int(m.group(2), 16),
                       "perms": m.group(3), "inode": int(m.group(4)),
                       "path": m.group(5).strip()}
                maps.append(cur)
                continue
            m = re.match(r"^(\w+):\s+(\d+) kB", line)
            if m and cur is not None:
                cur[m.group(1)] = int(m.group(2))
    return maps


def find_guest_ram(maps, memory_bytes):
    """The guest RAM mapping: anonymous, rw, of the --memory size (or the smallest such
    mapping a little larger, should a VMM over-allocate for alignment)."""
    want_kib = memory_bytes // 1024
    candidates = [m for m in maps
                  if m["inode"] == 0 and m["path"] == "" and m["perms"].startswith("rw")
                  and want_kib <= m.get("Size", 0) <= want_kib + 4096]
    if not candidates:
        return None
    exact = [m for m in candidates if m["Size"] == want_kib]
    pool = exact or candidates
    return min(pool, key=lambda m: m["Size"])


def sample_memory(pid, memory_bytes):
    status = read_status(pid)
    rollup = read_smaps_rollup(pid)
    maps = read_smaps(pid)
    ram = find_guest_ram(maps, memory_bytes)
    if ram is None:
        sizes = sorted({m.get("Size", 0) for m in maps if m["inode"] == 0})[-5:]
        raise RuntimeError(f"pid {pid}: no anonymous mapping of {memory_bytes // 1024} KiB "
                           f"in /proc/{pid}/smaps (largest anonymous sizes, KiB: {sizes})")
    ram_rss = ram.get("Rss", 0)
    smaps_rss_sum = sum(m.get("Rss", 0) for m in maps)
    return {
        "VmRSS_kib": status["VmRSS"],
        "VmHWM_kib": status["VmHWM"],
        "RssAnon_kib": status["RssAnon"],
        "RssFile_kib": status["RssFile"],
        "RssShmem_kib": status["RssShmem"],
        "threads": status.get("Threads"),
        "rollup_Rss_kib": rollup.get("Rss"),
        "rollup_Pss_kib": rollup.get("Pss"),
        "rollup_Private_Dirty_kib": rollup.get("Private_Dirty"),
        "smaps_Rss_sum_kib": smaps_rss_sum,
        "guest_ram_mapping_kib": ram["Size"],
        "guest_ram_rss_kib": ram_rss,
        "guest_ram_pss_kib": ram.get("Pss", 0),
        "rss_beyond_guest_ram_kib": status["VmRSS"] - ram_rss,
        "anon_beyond_guest_ram_kib": status["RssAnon"] - ram_rss,
        "pss_beyond_guest_ram_kib": rollup.get("Pss", 0) - ram.get("Pss", 0),
    }


# ---------------------------------------------------------------------------------------
# Spawning and timing


class Child:
    """A VMM process with stdout on a pipe and stderr in a temp file."""

    def __init__(self, argv, tmpdir, tag):
        self.argv = argv
        self.stderr_path = os.path.join(tmpdir, f"{tag}.stderr")
        self._stderr = open(self.stderr_path, "wb")
        self.t0 = time.perf_counter_ns()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, bufsize=0, close_fds=True)
        self.fd = self.proc.stdout.fileno()
        self.output = b""

    def first_byte_ns(self, timeout_s=FIRST_BYTE_TIMEOUT_S):
        """Block until the first stdout byte; its arrival time minus t0, or None on EOF or
        timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 1)
                t = time.perf_counter_ns()
                if not chunk:
                    return None
                self.output += chunk
                return t - self.t0

    def alive(self):
        return self.proc.poll() is None

    def finish(self, kill=False, timeout_s=30.0):
        """Drain stdout until EOF and reap. kill: SIGTERM now; SIGKILL if the process still
        holds its stdout open after timeout_s (5 s when killing)."""
        if kill and self.alive():
            # petrel: the first SIGTERM asks the guest to shut down, a second stops it now.
            self.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            if self.alive():
                self.proc.send_signal(signal.SIGTERM)
            timeout_s = min(timeout_s, 5.0)
        deadline = time.monotonic() + timeout_s
        killed_hard = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if killed_hard:
                    break
                self.proc.kill()
                killed_hard = True
                deadline = time.monotonic() + 5.0
                continue
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                self.output += chunk
        rc = self.proc.wait()
        self.proc.stdout.close()
        self._stderr.close()
        return rc

    def stderr_text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")


def petrel_mode_from_log(text):
    m = re.search(r"starting \d+ vCPU\(s\), (.+?) mode", text)
    return m.group(1) if m else "unknown"


def settle_and_sample(child, memory_bytes, settle_s):
    """Sample the running VMM every 50 ms for settle_s after its first serial byte; return
    the last sample (the VMM has finished its start-up by then) plus the highest
    rss_beyond_guest_ram seen."""
    end = time.monotonic() + settle_s
    last = None
    peak = 0
    while True:
        if not child.alive():
            raise RuntimeError(f"{child.argv[0]} exited (status {child.proc.returncode}) "
                               "before its memory could be sampled; stderr:\n"
                               + child.stderr_text()[-2000:])
        last = sample_memory(child.proc.pid, memory_bytes)
        peak = max(peak, last["rss_beyond_guest_ram_kib"])
        if time.monotonic() >= end:
            break
        time.sleep(0.05)
    last["rss_beyond_guest_ram_peak_kib"] = peak
    return last


# ---------------------------------------------------------------------------------------
# petrel


def petrel_argv(args, kernel, pvm_mode, cmdline=None):
    argv = [args.petrel, "run", "--kernel", kernel, "--memory", args.memory,
            "--serial", "stdio", "--log-level", "info"]
    if cmdline:
        argv += ["--cmdline", cmdline]
    if pvm_mode != "auto":
        argv += ["--pvm-mode", pvm_mode]
    return argv


def petrel_boot_run(args, tmpdir, pvm_mode, tag):
    child = Child(petrel_argv(args, args.guest, pvm_mode), tmpdir, tag)
    ns = child.first_byte_ns()
    rc = child.finish(kill=False, timeout_s=FIRST_BYTE_TIMEOUT_S)
    if ns is None or rc != 0:
        raise RuntimeError(f"petrel ({pvm_mode}) did not boot {args.guest}: exit status {rc}, "
                           f"stdout {child.output[:200]!r}, stderr:\n"
                           + child.stderr_text()[-2000:])
    return ns, petrel_mode_from_log(child.stderr_text()), child.output


def petrel_rss_run(args, tmpdir, pvm_mode, tag):
    argv = petrel_argv(args, args.rss_guest, pvm_mode, f"iterations={HUGE_ITERATIONS}")
    child = Child(argv, tmpdir, tag)
    try:
        ns = child.first_byte_ns()
        if ns is None:
            raise RuntimeError(f"petrel ({pvm_mode}) printed nothing running {args.rss_guest}; "
                               "stderr:\n" + child.stderr_text()[-2000:])
        sample = settle_and_sample(child, parse_size(args.memory), args.settle_ms / 1000.0)
    finally:
        child.finish(kill=True)
    sample["mode"] = petrel_mode_from_log(child.stderr_text())
    sample["first_byte_ms"] = ns / 1e6
    return sample


# ---------------------------------------------------------------------------------------
# QEMU


def write_firmware(tmpdir):
    """A 64 KiB firmware image mapped at the top of the first 4 GiB (and at 0xf0000). The
    CPU starts in real mode at 0xfffffff0, 16 bytes from the end of the image:
        ba f8 03   mov dx, 0x3f8
        b0 58      mov al, 'X'
        ee         out dx, al
        fa         cli
        f4         hlt          <- loops here forever
        eb fd      jmp hlt
    The rest of the image is hlt bytes."""
    code = bytes([0xBA, 0xF8, 0x03, 0xB0, 0x58, 0xEE, 0xFA, 0xF4, 0xEB, 0xFD])
    image = bytearray(b"\xf4" * 65536)
    image[-16:-16 + len(code)] = code
    path = os.path.join(tmpdir, "petrel-bench-fw.bin")
    with open(path, "wb") as f:
        f.write(image)
    return path


def qemu_argv(args, accel, machine, firmware):
    return [args.qemu, "-accel", accel, "-machine", machine, "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "stdio",
            "-m", args.memory, "-bios", firmware]


def qemu_run(args, tmpdir, accel, machine, firmware, tag, sample=True,
             timeout_s=FIRST_BYTE_TIMEOUT_S):
    child = Child(qemu_argv(args, accel, machine, firmware), tmpdir, tag)
    try:
        ns = child.first_byte_ns(timeout_s)
        if ns is None:
            return None, None, child
        mem = settle_and_sample(child, parse_size(args.memory),
                                args.settle_ms / 1000.0) if sample else None
    finally:
        child.finish(kill=True)
    return ns, mem, child


def qemu_rss_only(args, tmpdir, accel, machine, firmware, tag):
    """When no QEMU guest prints: QEMU's memory a fixed time after its start."""
    child = Child(qemu_argv(args, accel, machine, firmware), tmpdir, tag)
    try:
        time.sleep(1.0)
        mem = settle_and_sample(child, parse_size(args.memory), args.settle_ms / 1000.0)
    finally:
        child.finish(kill=True)
    return mem


def choose_qemu(args, tmpdir, firmware, accels):
    """Find the first accelerator/machine pair whose guest prints. Returns (accel, machine,
    notes, printed)."""
    machines = ["microvm", "q35"] if args.qemu_machine == "auto" else [args.qemu_machine]
    notes = []
    for accel in accels:
        for machine in machines:
            ns, _, child = qemu_run(args, tmpdir, accel, machine, firmware,
                                    f"qemu-probe-{accel}-{machine}", sample=False,
                                    timeout_s=PROBE_TIMEOUT_S)
            err = child.stderr_text().strip()
            if ns is not None and child.output[:1] == b"X":
                for line in err.splitlines():
                    if "terminating on signal" not in line:
                        notes.append(f"qemu -accel {accel} -machine {machine} stderr: {line}")
                return accel, machine, notes, True
            notes.append(f"qemu -accel {accel} -machine {machine}: no serial output within "
                         f"{PROBE_TIMEOUT_S:.0f} s "
                         f"(exit status {child.proc.returncode}); stderr: "
                         f"{err.splitlines()[-1] if err else '(empty)'}")
    return accels[0], machines[0], notes, False


def qemu_version(qemu):
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


# ---------------------------------------------------------------------------------------
# Statistics and output


def pct(sorted_values, p):
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[k - 1]


def timing_stats(ns_values):
    ms = sorted(v / 1e6 for v in ns_values)
    if not ms:
        return None
    return {"min": ms[0], "median": statistics.median(ms), "p90": pct(ms, 90),
            "max": ms[-1], "runs": len(ms), "all": [round(v, 3) for v in ms]}


def mem_stats(samples, key):
    vals = sorted(s[key] for s in samples)
    if not vals:
        return None
    return {"min": vals[0], "median": statistics.median(vals), "max": vals[-1],
            "runs": len(vals)}


MEM_KEYS = [
    ("rss_beyond_guest_ram_kib", "VmRSS - guest RAM Rss"),
    ("anon_beyond_guest_ram_kib", "  of which anonymous"),
    ("RssFile_kib", "  of which file-backed"),
    ("rss_beyond_guest_ram_peak_kib", "  highest of the samples"),
    ("pss_beyond_guest_ram_kib", "Pss - guest RAM Pss"),
    ("guest_ram_rss_kib", "guest RAM Rss"),
    ("VmRSS_kib", "VmRSS (total)"),
    ("threads", "threads"),
]


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.{digits}f}"
    return str(int(v))


def print_table(result):
    rows = result["rows"]
    w = 34
    print(f"petrel boot benchmark  {result['date']}  host {result['host']['kernel']}, "
          f"{result['host']['cpus']} CPUs, {result['host']['cpu_model']}"
          f"{', kvm_pvm' if result['host']['kvm_pvm'] else ''}")
    print(f"load average (1/5/15 min) at start {result['host']['loadavg_start']}, "
          f"at end {result['host']['loadavg_end']}")
    print(f"guest RAM {result['memory']}, {result['runs']} runs each (+{result['warmup']} "
          f"warm-up), samples taken {result['settle_ms']} ms after the first serial byte")
    print()
    print(f"{'boot-to-first-serial-byte (ms)':<{w}}{'min':>8}{'median':>8}{'p90':>8}"
          f"{'max':>8}{'runs':>6}")
    for row in rows:
        t = row.get("first_byte_ms")
        if t is None:
            print(f"{row['label']:<{w}}{'(no serial output)':>38}")
            continue
        print(f"{row['label']:<{w}}{t['min']:>8.2f}{t['median']:>8.2f}{t['p90']:>8.2f}"
              f"{t['max']:>8.2f}{t['runs']:>6}")
    print()
    print(f"{'VMM RSS (KiB), min / median':<{w}}" +
          "".join(f"{row['short']:>20}" for row in rows))
    for key, title in MEM_KEYS:
        cells = []
        for row in rows:
            s = row["memory"].get(key) if row.get("memory") else None
            cells.append(f"{fmt(s['min'])} / {fmt(s['median'])}" if s else "-")
        print(f"{title:<{w}}" + "".join(f"{c:>20}" for c in cells))
    print()
    print("What ran:")
    for row in rows:
        print(f"  {row['label'].strip()}:")
        timing = " ".join(row["timing_argv"]) if row.get("timing_argv") else "-"
        memory = " ".join(row["memory_argv"])
        if memory == timing:
            print(f"    timing and memory: {memory}")
        else:
            print(f"    timing: {timing}")
            print(f"    memory: {memory}")
        if row.get("mode_seen"):
            print(f"    petrel reported: {', '.join(sorted(row['mode_seen']))} mode")
    for note in result["notes"]:
        print(f"  note: {note}")


# ---------------------------------------------------------------------------------------


def host_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu_model": model,
            "kvm_pvm": os.path.exists("/sys/module/kvm_pvm"), "loadavg_start": loadavg()}


def binary_stamp(path):
    st = os.stat(path)
    return {"size": st.st_size,
            "mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime))}


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--petrel", default=os.path.join(REPO, "build/petrel"),
                    help="petrel binary (default: build/petrel)")
    ap.add_argument("--guest", default=None,
                    help="guest for the timing, printing at once and exiting "
                         "(default: tests/guest/hello.elf of the petrel build dir)")
    ap.add_argument("--rss-guest", default=None,
                    help="long-running guest for the memory sample, run with "
                         f"--cmdline iterations={HUGE_ITERATIONS} "
                         "(default: compute.elf next to --guest)")
    ap.add_argument("--runs", type=int, default=20, help="measured runs per VMM (default 20)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="unmeasured runs per VMM first (default 1)")
    ap.add_argument("--memory", default="256M", help="guest RAM for both VMMs (default 256M)")
    ap.add_argument("--settle-ms", type=int, default=300,
                    help="sample memory for this long after the first serial byte and "
                         "keep the last sample (default 300)")
    ap.add_argument("--pvm-modes", default="auto,emulated",
                    help="petrel --pvm-mode values to run, comma-separated (default "
                         "auto,emulated)")
    ap.add_argument("--qemu", default="/usr/bin/qemu-system-x86_64")
    ap.add_argument("--qemu-accel", default="auto",
                    help="auto: kvm, falling back to tcg (default); or a comma-separated "
                         "list (kvm,tcg) to measure each accelerator as its own row")
    ap.add_argument("--qemu-machine", choices=["auto", "microvm", "q35"], default="auto",
                    help="auto: microvm, falling back to q35 (default)")
    ap.add_argument("--no-qemu", action="store_true", help="measure petrel only")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead "
                    "of the table")
    ap.add_argument("--json-out", metavar="PATH",
                    help="also write the JSON to PATH (the table still goes to stdout)")
    args = ap.parse_args()

    args.petrel = os.path.abspath(args.petrel)
    if args.guest is None:
        # build/petrel -> build/tests/guest/hello.elf
        builddir = os.path.dirname(args.petrel)
        args.guest = os.path.join(builddir, "tests/guest/hello.elf")
    args.guest = os.path.abspath(args.guest)
    if args.rss_guest is None:
        args.rss_guest = os.path.join(os.path.dirname(args.guest), "compute.elf")
    args.rss_guest = os.path.abspath(args.rss_guest)
    parse_size(args.memory)
    for path in (args.petrel, args.guest, args.rss_guest):
        if not os.path.exists(path):
            ap.error(f"{path} does not exist (build with ninja -C build, or pass the path)")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    modes = [m.strip() for m in args.pvm_modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("auto", "emulated"):
            ap.error(f"--pvm-modes: unknown mode {m!r}")
    use_qemu = not args.no_qemu and os.path.exists(args.qemu)
    if args.qemu_accel == "auto":
        qemu_accel_sets = [["kvm", "tcg"]]
    else:
        qemu_accel_sets = [[a.strip()] for a in args.qemu_accel.split(",") if a.strip()]
        for (a,) in qemu_accel_sets:
            if a not in ("kvm", "tcg"):
                ap.error(f"--qemu-accel: unknown accelerator {a!r}")

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    host = host_info()
    petrel_stat_start = binary_stamp(args.petrel)
    notes = []
    if not args.no_qemu and not use_qemu:
        notes.append(f"{args.qemu} not found; QEMU not measured")

    with tempfile.TemporaryDirectory(prefix="petrel-bench-") as tmpdir:
        # Rows: petrel per mode, then QEMU.
        rows = []
        for mode in modes:
            rows.append({"vmm": "petrel", "pvm_mode": mode, "times": [], "samples": [],
                         "mode_seen": set(),
                         "timing_argv": petrel_argv(args, args.guest, mode),
                         "memory_argv": petrel_argv(args, args.rss_guest, mode,
                                                    f"iterations={HUGE_ITERATIONS}")})
        qemu_rows = 0
        for accels in (qemu_accel_sets if use_qemu else []):
            firmware = write_firmware(tmpdir)
            log(f"probing QEMU ({'/'.join(accels)}) ...")
            accel, machine, qnotes, printed = choose_qemu(args, tmpdir, firmware, accels)
            notes.extend(qnotes)
            qargv = qemu_argv(args, accel, machine, firmware)
            rows.append({"vmm": "qemu", "accel": accel, "machine": machine,
                         "printed": printed, "times": [], "samples": [],
                         "timing_argv": qargv if printed else None, "memory_argv": qargv})
            qemu_rows += 1
            if not printed:
                notes.append(f"no QEMU guest printed with {'/'.join(accels)}: QEMU's memory "
                             "is sampled 1 s after its start and no boot time is reported")

        total = args.warmup + args.runs
        for i in range(total):
            measured = i >= args.warmup
            log(f"run {i + 1}/{total}{'' if measured else ' (warm-up)'}")
            for row in rows:
                tag = f"{row['vmm']}-{i}"
                if row["vmm"] == "petrel":
                    ns, seen, _ = petrel_boot_run(args, tmpdir, row["pvm_mode"], tag + "-boot")
                    mem = petrel_rss_run(args, tmpdir, row["pvm_mode"], tag + "-rss")
                    row["mode_seen"].update({seen, mem["mode"]})
                else:
                    if row["printed"]:
                        ns, mem, child = qemu_run(args, tmpdir, row["accel"], row["machine"],
                                                  firmware, tag)
                        if ns is None:
                            raise RuntimeError("QEMU stopped printing: "
                                               + child.stderr_text()[-2000:])
                    else:
                        ns = None
                        mem = qemu_rss_only(args, tmpdir, row["accel"], row["machine"],
                                            firmware, tag)
                if measured:
                    if ns is not None:
                        row["times"].append(ns)
                    row["samples"].append(mem)

    for row in rows:
        if row["vmm"] == "petrel":
            seen = sorted(row["mode_seen"])
            accel = "kvm"
            mode_txt = {"PVM native": "pvm-native", "PVM emulated": "pvm-emulated",
                        "hardware": "hardware"}.get(seen[0], seen[0]) if len(seen) == 1 \
                else "/".join(seen)
            if row["pvm_mode"] == "emulated" and mode_txt == "hardware":
                mode_txt = "hardware, emulated n/a"   # not a PVM host: flag has no effect
            row["label"] = f"petrel ({accel}, {mode_txt})"
            row["short"] = f"petrel {mode_txt.replace('pvm-', '')}"
            row["mode_seen"] = seen
        else:
            row["label"] = f"qemu  ({row['accel']}, {row['machine']})"
            row["short"] = f"qemu {row['accel']}"
        row["first_byte_ms"] = timing_stats(row.pop("times"))
        samples = row.pop("samples")
        row["memory"] = {key: mem_stats(samples, key) for key, _ in MEM_KEYS}
        row["memory"]["VmHWM_kib"] = mem_stats(samples, "VmHWM_kib")
        row["memory"]["guest_ram_mapping_kib"] = mem_stats(samples, "guest_ram_mapping_kib")
        row["memory_samples"] = samples

    if qemu_rows:
        notes.append(f"QEMU version: {qemu_version(args.qemu)}")
        notes.append("QEMU's guest is a 10-byte real-mode loop in a generated -bios image; "
                     "it needs no loader, paging or mode switch. petrel's guest is an ELF "
                     "entered in 64-bit mode that sets up its IDT and printf before printing")

    result = {
        "date": started,
        "host": dict(host, loadavg_end=loadavg()),
        "memory": args.memory,
        "runs": args.runs,
        "warmup": args.warmup,
        "settle_ms": args.settle_ms,
        "petrel": args.petrel,
        "guest": args.guest,
        "rss_guest": args.rss_guest,
        "rows": rows,
        "notes": notes,
    }
    result["petrel_binary"] = petrel_stat_start
    if binary_stamp(args.petrel) != petrel_stat_start:
        notes.append(f"{args.petrel} changed during the benchmark (rebuilt?); figures mix "
                     "two builds")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError) as e:
        log(f"boot_bench: {e}")
        sys.exit(1)
