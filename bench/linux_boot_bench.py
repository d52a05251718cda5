#!/usr/bin/env python3
"""Linux boot time, exec to "Run /init": petrel and QEMU side by side, plus petrel's set-up.

For every run, interleaved (petrel vmlinux, [petrel bzImage], QEMU, petrel hello.elf, then
the next run) so that drift of the machine hits every row alike, this measures:

  1. exec to "Run /init": time.perf_counter_ns() is read just before subprocess.Popen
     forks and execs the VMM (stdout and stderr on pipes, both read as data arrives); the
     end is the moment the chunk of guest console output (the VMM's stdout) that completes
     the text "Run /init" is read from the pipe. The kernel prints "Run /init as init
     process" right before it execs the initramfs's /init: the end of kernel boot. The VMM
     then gets SIGTERM (on a PVM host Linux user space cannot run anyway). Also recorded:
     exec to the first console byte, the kernel's printk timestamp on the "Run /init" line,
     and the VMM's CPU time (user + system, all threads, /proc/<pid>/stat) when the line
     arrived, which a loaded machine stretches far less than the wall clock.
     petrel boots the PVH vmlinux (and, with --bzimage, the bzImage through the Linux
     64-bit boot protocol). QEMU boots the same vmlinux with -M microvm -kernel (PVH), with
     the same initrd, RAM and vCPUs and the command line the kernel reported under petrel
     ("Command line: ..."), i.e. including what petrel appends on a PVM host in emulated
     mode, so both kernels avoid the same instructions. QEMU runs with -accel kvm first;
     a failure (QEMU exits, or prints "KVM internal error", e.g. on an instruction PVM's
     emulator cannot run and QEMU does not handle) is reported with its error text, and
     QEMU is then measured with -accel tcg. For a QEMU/KVM boot that died after printing,
     the table also compares when each VMM printed the last line QEMU got to.
  2. petrel's own set-up, exec to the first guest instruction: petrel logs "starting N
     vCPU(s), ... mode" (wall-clock timestamp, microseconds, local time) right before its
     vCPU threads enter KVM_RUN. The figure is that timestamp minus time.time() read just
     before Popen; both are CLOCK_REALTIME. Taken from every Linux boot above and from runs
     of the tiny test guest hello.elf, whose exec-to-first-serial-byte time (the method of
     bench/boot_bench.py) is reported too as a cross-check.

This is a benchmark, not a test: it prints figures and asserts nothing about time.
Standard library only. Linux only (/proc, os.waitid, os.wait4).
"""

import argparse
import datetime
import json
import os
import platform
import re
import select
import signal
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What petrel appends to a Linux command line on a PVM host in emulated mode is
# kLinuxEmulatedCmdline in src/vmm/pvm_host.cc. QEMU gets the command line the kernel
# reported ("Command line: ...") in the latest petrel boot of this invocation; before the
# first one (or if none printed it), the string from the source file, else this copy.
PVM_SOURCE = os.path.join(REPO, "src/vmm/pvm_host.cc")
PVM_EMULATED_EXTRA_FALLBACK = "clearcpuid=141,151,154,158,288,295,306,308"

RUN_INIT = b"Run /init"
# Lines on stderr that mean the guest is dead although the VMM process lives on (QEMU
# pauses the VM after a KVM internal error instead of exiting).
STDERR_FATAL = [b"KVM internal error", b"emulation failure"]
STDOUT_FATAL = [b"Kernel panic"]
FATAL_GRACE_S = 1.0   # after a fatal line, collect the rest of the report this long

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+) (\w+) petrel: (.*)$")
PRINTK_RUN_INIT = re.compile(rb"\[\s*(\d+\.\d+)\] Run /init")
PRINTK_PREFIX = re.compile(rb"^\[\s*\d+\.\d+\]\s?")
PRINTK_STAMP = re.compile(rb"^\[\s*(\d+\.\d+)\]", re.MULTILINE)
KERNEL_CMDLINE = re.compile(rb"\] Command line: ([^\r\n]*)")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


# ---------------------------------------------------------------------------------------
# Running one boot


class Boot:
    """One VMM process: stdout (guest console) and stderr (VMM log) on pipes, both read
    as they come, with the arrival time of every chunk."""

    def __init__(self, argv):
        self.argv = argv
        self.t0_wall = time.time()
        self.t0 = time.perf_counter_ns()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0, close_fds=True)
        self.out = bytearray()
        # console line (printk timestamp stripped) -> (first arrival in ns after exec, the
        # VMM's CPU time in s at that moment)
        self.lines = {}
        self._line_start = 0
        self.cpu_s = None      # user + system CPU time of the VMM process, from wait4()
        self.err = bytearray()
        self.first_byte_ns = None
        self.match_ns = None
        self.fatal = None
        self.fatal_ns = None
        self.match_cpu_s = None
        self.fds = {self.proc.stdout.fileno(): "out", self.proc.stderr.fileno(): "err"}

    def _read_ready(self, timeout_s):
        if not self.fds:
            time.sleep(min(timeout_s, 0.05))
            return []
        ready, _, _ = select.select(list(self.fds), [], [], max(0.0, timeout_s))
        events = []
        for fd in ready:
            chunk = os.read(fd, 65536)
            t = time.perf_counter_ns() - self.t0
            if not chunk:
                del self.fds[fd]
                continue
            events.append((self.fds[fd], chunk, t))
        return events

    def _note_lines(self, t):
        while True:
            nl = self.out.find(b"\n", self._line_start)
            if nl < 0:
                return
            line = bytes(self.out[self._line_start:nl]).rstrip(b"\r")
            self._line_start = nl + 1
            text = PRINTK_PREFIX.sub(b"", line).decode(errors="replace").strip()
            if text and text not in self.lines:
                self.lines[text] = (t, self.cpu_now())

    def wait_for(self, pattern, timeout_s):
        """Read until pattern appears on stdout (pattern None: the first stdout byte), the
        process ends, a fatal message appears, or timeout_s passes. Returns True on a
        match."""
        deadline = time.monotonic() + timeout_s
        fatal_deadline = None
        while True:
            now = time.monotonic()
            if fatal_deadline is not None and now >= fatal_deadline:
                return False
            if now >= deadline:
                self.fatal = self.fatal or f"no {pattern.decode() if pattern else 'output'!r} " \
                                           f"within {timeout_s:.0f} s"
                return False
            limit = min(deadline, fatal_deadline or deadline) - now
            matched = False
            # Take in every chunk of this round (a stderr chunk read together with the
            # matching stdout chunk must not be lost) before returning.
            for kind, chunk, t in self._read_ready(min(limit, 1.0)):
                if kind == "out":
                    start = max(0, len(self.out) - (len(pattern) if pattern else 0))
                    self.out += chunk
                    self._note_lines(t)
                    if self.first_byte_ns is None:
                        self.first_byte_ns = t
                    if fatal_deadline is None and not matched:
                        if pattern is None or self.out.find(pattern, start) >= 0:
                            self.match_ns = t
                            self.match_cpu_s = self.cpu_now()
                            matched = True
                            continue
                        for bad in STDOUT_FATAL:
                            if bad in self.out[max(0, start - 64):]:
                                self.fatal = f"guest console: {bad.decode()}"
                                self.fatal_ns = t
                                fatal_deadline = time.monotonic() + FATAL_GRACE_S
                                break
                else:
                    self.err += chunk
                    if fatal_deadline is None and not matched:
                        for bad in STDERR_FATAL:
                            if bad in self.err:
                                self.fatal = f"VMM stderr: {bad.decode()}"
                                self.fatal_ns = t
                                fatal_deadline = time.monotonic() + FATAL_GRACE_S
                                break
            if matched:
                return True
            if self.exited() and not self.fds:
                if self.fatal is None:
                    self.fatal = "exited before it"
                    self.fatal_ns = time.perf_counter_ns() - self.t0
                return False

    def finish(self, kill=True, timeout_s=10.0):
        """SIGTERM (if kill), drain both pipes until EOF, reap; SIGKILL after timeout_s."""
        if kill and not self.exited():
            # os.kill, not Popen.send_signal: that one polls and might reap the child,
            # losing its CPU time. An exited but unreaped child keeps its pid.
            os.kill(self.proc.pid, signal.SIGTERM)
            # petrel: the first SIGTERM asks the guest to shut down, a second stops it now.
            time.sleep(0.3)
            if not self.exited():
                os.kill(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        hard = False
        while self.fds:
            if time.monotonic() >= deadline:
                if hard:
                    break
                if not self.exited():
                    os.kill(self.proc.pid, signal.SIGKILL)
                hard = True
                deadline = time.monotonic() + 5.0
            for kind, chunk, _ in self._read_ready(0.2):
                (self.out if kind == "out" else self.err).extend(chunk)
        if self.proc.returncode is None:
            # wait4 instead of Popen.wait: the child's CPU time comes with it.
            _, status, ru = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_s = ru.ru_utime + ru.ru_stime
        rc = self.proc.returncode
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc

    def cpu_now(self):
        """User + system CPU time of the VMM process so far (all its threads), in s, from
        /proc/<pid>/stat (clock-tick resolution); None once it is gone."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            return None

    def exited(self):
        """Whether the child has exited, without reaping it (WNOWAIT)."""
        if self.proc.returncode is not None:
            return True
        return os.waitid(os.P_PID, self.proc.pid,
                         os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def stderr_text(self):
        return self.err.decode(errors="replace")


def petrel_log_facts(boot):
    """From petrel's text log: the 'starting N vCPU(s)' time relative to exec (ms), the
    execution mode and the boot protocol."""
    facts = {"start_vcpus_ms": None, "mode": None, "protocol": None}
    for line in boot.stderr_text().splitlines():
        m = LOG_TS.match(line)
        if not m:
            continue
        msg = m.group(3)
        sm = re.match(r"starting (\d+) vCPU\(s\), (.+) mode$", msg)
        if sm and facts["start_vcpus_ms"] is None:
            # Local time, as spdlog's %Y-%m-%dT%H:%M:%S.%f pattern prints it.
            ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
            facts["start_vcpus_ms"] = (ts - boot.t0_wall) * 1e3
            facts["mode"] = sm.group(2)
        km = re.match(r"kernel .*: (.+)$", msg)
        if km and facts["protocol"] is None:
            facts["protocol"] = km.group(1)
    return facts


def linux_run(argv, timeout_s, is_petrel):
    """One Linux boot to "Run /init". Returns a record (times in ms)."""
    boot = Boot(argv)
    ok = boot.wait_for(RUN_INIT, timeout_s)
    rc = boot.finish(kill=True)
    rec = {"ok": ok,
           "run_init_ms": boot.match_ns / 1e6 if ok else None,
           "first_byte_ms": boot.first_byte_ns / 1e6 if boot.first_byte_ns else None,
           "exit_status": rc, "run_init_cpu_s": boot.match_cpu_s if ok else None,
           "cpu_total_s": boot.cpu_s}
    # Arrival of every console line (without its printk timestamp): ms after exec and the
    # VMM's CPU seconds; used to compare how fast two VMMs got to the same point. Not in
    # the JSON output.
    rec["_lines"] = {text: (t / 1e6, cpu) for text, (t, cpu) in boot.lines.items()}
    last = [text for text in boot.lines]
    rec["last_console_line"] = last[-1] if last else None
    m = PRINTK_RUN_INIT.search(bytes(boot.out))
    rec["printk_run_init_s"] = float(m.group(1)) if m else None
    stamps = PRINTK_STAMP.findall(bytes(boot.out))
    rec["last_printk_s"] = float(stamps[-1]) if stamps else None
    m = KERNEL_CMDLINE.search(bytes(boot.out))
    rec["kernel_cmdline"] = m.group(1).decode(errors="replace").strip() if m else None
    if is_petrel:
        rec.update(petrel_log_facts(boot))
    if not ok:
        rec["error"] = boot.fatal
        if boot.fatal == "exited before it":
            rec["error"] = f"exited with status {rc} before 'Run /init'"
        rec["failed_after_ms"] = boot.fatal_ns / 1e6 if boot.fatal_ns is not None else None
        rec["stderr_tail"] = "\n".join(boot.stderr_text().strip().splitlines()[-40:])
        rec["console_tail"] = "\n".join(
            bytes(boot.out).decode(errors="replace").strip().splitlines()[-10:])
    return rec


def hello_run(args):
    """petrel running hello.elf: exec to first serial byte and to the log line."""
    boot = Boot(petrel_argv(args, args.hello, None, None))
    ok = boot.wait_for(None, 60.0)
    rc = boot.finish(kill=False, timeout_s=30.0)
    rec = {"ok": ok and rc == 0, "first_byte_ms": boot.first_byte_ns / 1e6 if ok else None,
           "exit_status": rc, "cpu_total_s": boot.cpu_s}
    rec.update(petrel_log_facts(boot))
    if not rec["ok"]:
        rec["error"] = boot.fatal or f"exit status {rc}"
        rec["stderr_tail"] = "\n".join(boot.stderr_text().strip().splitlines()[-40:])
    return rec


# ---------------------------------------------------------------------------------------
# Command lines


def petrel_argv(args, kernel, initrd, cmdline):
    argv = [args.petrel, "run", "--kernel", kernel, "--memory", args.memory,
            "--vcpus", str(args.vcpus), "--serial", "stdio", "--log-level", "debug"]
    if initrd:
        argv += ["--initrd", initrd]
    if cmdline:
        argv += ["--cmdline", cmdline]
    return argv


def qemu_argv(args, accel, cpu, machine, append):
    return [args.qemu, "-M", machine, "-accel", accel, "-cpu", cpu,
            "-m", args.memory, "-smp", str(args.vcpus), "-nodefaults", "-no-user-config",
            "-nographic", "-serial", "stdio", "-kernel", args.vmlinux,
            "-initrd", args.initrd, "-append", append]


def pvm_extra_from_source():
    """kLinuxEmulatedCmdline from src/vmm/pvm_host.cc, or None."""
    try:
        with open(PVM_SOURCE) as f:
            m = re.search(r'kLinuxEmulatedCmdline\s*=\s*"([^"]*)"', f.read())
        return m.group(1) if m else None
    except OSError:
        return None


def qemu_version(qemu):
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


# ---------------------------------------------------------------------------------------
# Statistics and output


def stats(values):
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    return {"min": vals[0], "median": statistics.median(vals), "max": vals[-1],
            "n": len(vals), "all": [round(v, 3) for v in vals]}


def summarise(rows):
    for row in rows:
        recs = row["records"]
        ok = [r for r in recs if r["ok"]]
        row["attempted"] = len(recs)
        row["succeeded"] = len(ok)
        for key in ("run_init_ms", "start_vcpus_ms"):
            row[key] = stats(r.get(key) for r in ok)
        # The first console byte also counts from boots that failed later: where a VMM cannot
        # reach Run /init, how far it got under the same conditions is still comparable.
        row["first_byte_ms"] = stats(r.get("first_byte_ms") for r in recs)
        row["first_byte_from_failed_runs"] = sum(
            1 for r in recs if not r["ok"] and r.get("first_byte_ms") is not None)
        if row["kind"] == "linux":
            row["last_printk_s_failed"] = [r.get("last_printk_s") for r in recs if not r["ok"]]
        row["printk_run_init_s"] = stats(r.get("printk_run_init_s") for r in ok)
        row["run_init_cpu_s"] = stats(r.get("run_init_cpu_s") for r in ok)
        guest = [r["run_init_ms"] - r["start_vcpus_ms"] for r in ok
                 if r.get("run_init_ms") is not None and r.get("start_vcpus_ms") is not None]
        row["first_insn_to_run_init_ms"] = stats(guest)
        modes = sorted({r["mode"] for r in recs if r.get("mode")})
        protos = sorted({r["protocol"] for r in recs if r.get("protocol")})
        if modes:
            row["petrel_mode"] = "/".join(modes)
        if protos:
            row["petrel_protocol"] = "/".join(protos)
        errors = []
        for r in recs:
            if not r["ok"] and r.get("error") and r["error"] not in errors:
                errors.append(r["error"])
        row["errors"] = errors


def failure_detail(rec):
    """One line: why a boot failed, with the telling lines of the VMM's stderr."""
    parts = [rec.get("error") or "failed"]
    err = rec.get("stderr_tail") or ""
    for line in err.splitlines():
        if re.search(r"error|failure|Assertion|cannot|failed", line, re.IGNORECASE) \
                and "terminating on signal" not in line \
                and not any(line.strip() in p or p.split(": ", 1)[-1] in line for p in parts):
            parts.append(line.strip())
    m = re.search(r"^Code=.*<([0-9a-f]{2})>((?: [0-9a-f]{2}){0,5})", err, re.MULTILINE)
    if m:
        parts.append(f"instruction bytes at RIP: {m.group(1)}{m.group(2)}")
    m = re.search(r"^RIP=([0-9a-f]+)", err, re.MULTILINE)
    if m:
        parts.append(f"RIP={m.group(1)}")
    if rec.get("failed_after_ms") is not None:
        parts.append(f"{rec['failed_after_ms'] / 1e3:.2f} s after exec")
    if rec.get("last_printk_s") is not None:
        parts.append(f"last console line at kernel time {rec['last_printk_s']:.2f} s")
    return "; ".join(parts)


def describe(row):
    if row["vmm"] == "petrel":
        mode = row.get("petrel_mode", "?")
        accel = {"PVM emulated": "KVM (PVM emulated mode)",
                 "PVM native": "KVM (PVM native mode)",
                 "hardware": "KVM (VT-x/AMD-V)"}.get(mode, f"KVM ({mode})")
        return f"{accel}, petrel, {row.get('petrel_protocol', row['protocol'])}"
    return (f"{row['accel'].upper()}, QEMU -M {row['qemu_machine']} -cpu {row['cpu']}, "
            f"{row['protocol']}")


def print_table(result):
    rows = result["rows"]
    h = result["host"]
    print(f"petrel Linux boot benchmark  {result['date']}  host {h['kernel']}, {h['cpus']} "
          f"CPUs, {h['cpu_model']}{', kvm_pvm' if h['kvm_pvm'] else ''}")
    print(f"load average (1/5/15 min) at start {h['loadavg_start']}, at end {h['loadavg_end']}")
    print(f"guest: {result['memory']} RAM, {result['vcpus']} vCPU(s); {result['runs']} runs, "
          "interleaved; petrel --cmdline " + repr(result["petrel_cmdline"]))
    for c in result["kernel_cmdlines_seen"]:
        print(f"kernel command line under petrel (its 'Command line:'): {c!r}")
    if any(r["vmm"] == "qemu" for r in rows):
        print(f"QEMU -append: {result['qemu_append']!r}")
    print()

    w = 32
    print(f"{'':<{w}}{'min':>9}{'median':>9}{'max':>9}{'ok/runs':>9}   what ran")

    def section(title, key, scale, selector):
        print(title)
        for row in rows:
            if not selector(row) or not row["attempted"]:
                continue
            st = row.get(key)
            okruns = f"{row['succeeded']}/{row['attempted']}"
            label = "  " + row["label"]
            if st is None:
                print(f"{label:<{w}}{'FAILED':>27}{okruns:>9}   {describe(row)}")
                shown = set()
                for r in row["records"]:
                    if not r["ok"]:
                        d = failure_detail(r)
                        if d not in shown:
                            shown.add(d)
                            print(f"{'':<6}error: {d}")
                continue
            print(f"{label:<{w}}{st['min'] * scale:>9.2f}{st['median'] * scale:>9.2f}"
                  f"{st['max'] * scale:>9.2f}{okruns:>9}   {describe(row)}")
            if key == "first_byte_ms" and row.get("first_byte_from_failed_runs"):
                print(f"{'':<6}(of which {row['first_byte_from_failed_runs']} from runs that "
                      "failed later; ok/runs counts Run /init)")
            elif st["n"] < row["succeeded"]:
                print(f"{'':<6}(value found in {st['n']} of the successful runs)")

    linux = lambda r: r["kind"] == "linux"  # noqa: E731
    section('exec -> "Run /init" on the console (s)', "run_init_ms", 1e-3, linux)
    section("exec -> first console byte (s)", "first_byte_ms", 1e-3, linux)
    section("kernel's printk timestamp on the Run /init line (s)", "printk_run_init_s", 1.0,
            lambda r: linux(r) and r["succeeded"])
    section("CPU time of the VMM process (user + system, all threads) at Run /init (s)",
            "run_init_cpu_s", 1.0, lambda r: linux(r) and r["succeeded"])
    for ms in result["milestones"]:
        print(f"exec -> console line {ms['line']!r} (s)")
        print(f"{'':<4}(the last line a QEMU/KVM boot printed before it failed)")
        for entry in ms["rows"]:
            st, cpu = entry["stats"], entry["cpu_s"]
            label = "  " + entry["label"]
            cpu_txt = (f"CPU time then: {cpu['min']:.2f} / {cpu['median']:.2f} / "
                       f"{cpu['max']:.2f} s") if cpu else ""
            print(f"{label:<{w}}{st['min'] / 1e3:>9.2f}{st['median'] / 1e3:>9.2f}"
                  f"{st['max'] / 1e3:>9.2f}{str(st['n']) + '/' + str(entry['runs']):>9}"
                  f"   {cpu_txt}")
    section("petrel: first guest instruction -> \"Run /init\" (s)",
            "first_insn_to_run_init_ms", 1e-3,
            lambda r: linux(r) and r["vmm"] == "petrel" and r["succeeded"])
    section("petrel set-up: exec -> first guest instruction (ms) [its 'starting N vCPU(s)' "
            "log line]", "start_vcpus_ms", 1.0,
            lambda r: r["vmm"] == "petrel" and r["succeeded"])
    section("petrel: exec -> first serial byte (ms) [bench/boot_bench.py's method]",
            "first_byte_ms", 1.0, lambda r: r["kind"] == "hello")
    print()
    for line in result["ratios"]:
        print(line)
    if result["ratios"]:
        print()
    print("What ran:")
    for row in rows:
        if row.get("not_run"):
            print(f"  {row['label'].strip()}: not run (an earlier row succeeded, "
                  f"--qemu-accel auto): {' '.join(row['argv'])}")
        else:
            print(f"  {row['label'].strip()}: {' '.join(row['argv'])}")
    for note in result["notes"]:
        print(f"  note: {note}")
    for row in rows:
        for r in row["records"]:
            if not r["ok"] and r.get("stderr_tail"):
                print(f"\nFirst failure of {row['label'].strip()} (run {r.get('run', '?')}, "
                      f"{r['error']}); last lines of its stderr:")
                print("    " + r["stderr_tail"].replace("\n", "\n    "))
                if r.get("console_tail"):
                    print("  last console lines:")
                    print("    " + r["console_tail"].replace("\n", "\n    "))
                break


def compare_milestones(rows):
    """For QEMU/KVM boots that died after printing: the last console line each printed,
    and when every Linux row printed that same line (exec to its arrival, ms)."""
    lines = []
    for row in rows:
        if row["vmm"] == "qemu" and row.get("accel") == "kvm":
            for rec in row["records"]:
                line = rec.get("last_console_line")
                if not rec["ok"] and line and line not in lines:
                    lines.append(line)
    out = []
    for line in lines:
        per_row = []
        for row in rows:
            if row["kind"] != "linux":
                continue
            hits = [rec["_lines"][line] for rec in row["records"]
                    if line in rec.get("_lines", {})]
            st = stats(ms for ms, _ in hits)
            if st:
                per_row.append({"label": row["label"], "stats": st,
                                "cpu_s": stats(cpu for _, cpu in hits),
                                "runs": len(row["records"])})
        out.append({"line": line, "rows": per_row})
    return out


def ratios(rows, milestones=()):
    out = []
    for ms in milestones:
        by_label = {e["label"]: e for e in ms["rows"]}
        p = next((e for lbl, e in by_label.items() if lbl.startswith("petrel  vmlinux")), None)
        if not p:
            continue
        for lbl, e in by_label.items():
            if "(kvm" not in lbl:
                continue
            line = (f"median exec -> {ms['line']!r}, {lbl.strip()} / petrel vmlinux: "
                    f"{e['stats']['median'] / p['stats']['median']:.2f} (wall clock)")
            if e["cpu_s"] and p["cpu_s"] and p["cpu_s"]["median"]:
                line += f", {e['cpu_s']['median'] / p['cpu_s']['median']:.2f} (CPU time)"
            out.append(line)
    petrel = next((r for r in rows if r["vmm"] == "petrel" and r["kind"] == "linux"
                   and r["image"] == "vmlinux" and r["run_init_ms"]), None)
    if not petrel:
        return out
    for row in rows:
        if row["vmm"] == "qemu" and row["run_init_ms"]:
            q = row["run_init_ms"]["median"] / petrel["run_init_ms"]["median"]
            out.append(f"median exec -> Run /init, {row['label'].strip()} / "
                       f"{petrel['label'].strip()}: {q:.3f} "
                       f"(petrel / QEMU: {1 / q:.1f})")
            if row.get("run_init_cpu_s") and petrel.get("run_init_cpu_s"):
                c = row["run_init_cpu_s"]["median"] / petrel["run_init_cpu_s"]["median"]
                out.append(f"median CPU time at Run /init, {row['label'].strip()} / "
                           f"{petrel['label'].strip()}: {c:.3f} (petrel / QEMU: {1 / c:.1f})")
    return out


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


def stamp(path):
    st = os.stat(path)
    return {"path": path, "size": st.st_size,
            "mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime))}


def main():
    cache = os.path.join(REPO, "guest-cache")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs per row (default 5)")
    ap.add_argument("--petrel", default=os.path.join(REPO, "build/petrel"))
    ap.add_argument("--vmlinux", default=os.path.join(cache, "linux/vmlinux"))
    ap.add_argument("--bzimage", nargs="?", const=os.path.join(cache, "linux/bzImage"),
                    default=None, metavar="PATH",
                    help="also boot the bzImage with petrel (default path "
                         "guest-cache/linux/bzImage; slow under PVM's emulator)")
    ap.add_argument("--initrd", default=os.path.join(cache, "initramfs.cpio.gz"))
    ap.add_argument("--hello", default=None,
                    help="test guest for petrel's set-up time (default "
                         "tests/guest/hello.elf of petrel's build dir)")
    ap.add_argument("--hello-runs", type=int, default=5,
                    help="hello.elf runs per run (default 5; 0 to skip)")
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--cmdline", default="console=ttyS0",
                    help="kernel command line given to petrel (default console=ttyS0)")
    ap.add_argument("--qemu-append", default=None,
                    help="QEMU's -append (default: the command line the kernel reported in "
                         "the latest petrel boot, i.e. --cmdline plus what petrel appends on "
                         "a PVM host; before that boot, --cmdline plus kLinuxEmulatedCmdline "
                         "from src/vmm/pvm_host.cc when /sys/module/kvm_pvm exists)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds to wait for Run /init per boot (default 600; the bzImage "
                         "gets 3x)")
    ap.add_argument("--qemu", default="/usr/bin/qemu-system-x86_64")
    ap.add_argument("--qemu-accel", default="auto",
                    help="auto (default): the kvm rows (see --qemu-cpu-kvm), then tcg "
                         "while no kvm row has reached Run /init; a kvm row that fails "
                         "before any console output is reported once and not run again, "
                         "one that fails later runs every run (how far and how fast it got "
                         "is compared). Or a comma-separated list (kvm,tcg): those rows, "
                         "every run, failures and all")
    ap.add_argument("--qemu-machine", default="microvm", help="QEMU -M with kvm "
                    "(default microvm)")
    ap.add_argument("--qemu-machine-tcg", default="microvm,acpi=off",
                    help="QEMU -M with tcg (default microvm,acpi=off: with microvm's ACPI "
                         "the kernel under TCG never gets a timer tick)")
    ap.add_argument("--qemu-cpu-kvm", action="append", default=None, metavar="CPU",
                    help="QEMU -cpu with kvm, one row each; repeatable (default: host, then "
                         "host,-arch-capabilities)")
    ap.add_argument("--qemu-cpu-tcg", default="max",
                    help="QEMU -cpu with tcg (default max; 'host' needs KVM)")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--json-out", metavar="PATH", help="also write the JSON to PATH")
    args = ap.parse_args()

    args.petrel = os.path.abspath(args.petrel)
    if args.hello is None:
        builddir = os.path.dirname(os.path.dirname(os.path.dirname(args.petrel)))
        args.hello = os.path.join(builddir, "tests/guest/hello.elf")
    paths = [args.petrel, args.vmlinux, args.initrd]
    if args.bzimage:
        paths.append(args.bzimage)
    if args.hello_runs:
        paths.append(args.hello)
    for p in paths:
        if not os.path.exists(p):
            ap.error(f"{p} does not exist (ninja -C build; scripts/build-guest-kernel.sh; "
                     "scripts/build-initramfs.sh)")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.qemu_cpu_kvm is None:
        args.qemu_cpu_kvm = ["host", "host,-arch-capabilities"]
    pvm = os.path.exists("/sys/module/kvm_pvm")
    initial_extra = ""
    if pvm:
        initial_extra = pvm_extra_from_source() or PVM_EMULATED_EXTRA_FALLBACK
    # The -append QEMU gets until a petrel boot reports the real command line.
    qemu_append = {"value": args.qemu_append
                   or " ".join(x for x in (args.cmdline, initial_extra) if x),
                   "source": "--qemu-append" if args.qemu_append else
                   ("--cmdline + kLinuxEmulatedCmdline of src/vmm/pvm_host.cc" if pvm
                    else "--cmdline")}
    use_qemu = not args.no_qemu and os.path.exists(args.qemu)
    if args.qemu_accel == "auto":
        accels, auto = ["kvm", "tcg"], True
    else:
        accels, auto = [a.strip() for a in args.qemu_accel.split(",") if a.strip()], False
        for a in accels:
            if a not in ("kvm", "tcg"):
                ap.error(f"--qemu-accel: unknown accelerator {a!r}")

    notes = []
    if not args.no_qemu and not use_qemu:
        notes.append(f"{args.qemu} not found; QEMU not measured")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    host = host_info()
    binaries = {"petrel": stamp(args.petrel), "vmlinux": stamp(args.vmlinux),
                "initrd": stamp(args.initrd)}
    if args.bzimage:
        binaries["bzimage"] = stamp(args.bzimage)

    rows = [{"vmm": "petrel", "kind": "linux", "image": "vmlinux", "protocol": "PVH",
             "label": "petrel  vmlinux",
             "argv": petrel_argv(args, args.vmlinux, args.initrd, args.cmdline),
             "timeout": args.timeout, "records": []}]
    if args.bzimage:
        rows.append({"vmm": "petrel", "kind": "linux", "image": "bzImage",
                     "protocol": "Linux 64-bit boot protocol", "label": "petrel  bzImage",
                     "argv": petrel_argv(args, args.bzimage, args.initrd, args.cmdline),
                     "timeout": 3 * args.timeout, "records": []})
    if use_qemu:
        for accel in accels:
            cpus = args.qemu_cpu_kvm if accel == "kvm" else [args.qemu_cpu_tcg]
            machine = args.qemu_machine if accel == "kvm" else args.qemu_machine_tcg
            for n, cpu in enumerate(cpus):
                suffix = "" if len(cpus) == 1 else f" #{n + 1}"
                rows.append({"vmm": "qemu", "kind": "linux", "image": "vmlinux",
                             "accel": accel, "cpu": cpu, "qemu_machine": machine,
                             "protocol": "PVH (-kernel vmlinux)",
                             "label": f"qemu    vmlinux ({accel}{suffix})",
                             "argv": None, "timeout": args.timeout, "records": [],
                             "disabled": False})
    if args.hello_runs:
        rows.append({"vmm": "petrel", "kind": "hello", "image": "hello.elf",
                     "protocol": "petrel test guest", "label": "petrel  hello.elf",
                     "argv": petrel_argv(args, args.hello, None, None), "records": []})

    def skip(row):
        if row.get("disabled"):
            return True
        if auto and row["vmm"] == "qemu" and row["accel"] == "tcg":
            # auto: TCG only while no KVM row has reached Run /init.
            return any(rec["ok"] for r in rows if r["vmm"] == "qemu" and r["accel"] == "kvm"
                       for rec in r["records"])
        return False

    seen_cmdlines = set()
    for i in range(args.runs):
        for row in rows:
            if skip(row):
                continue
            if row["kind"] == "hello":
                log(f"run {i + 1}/{args.runs}: {row['label'].strip()} x{args.hello_runs}")
                for _ in range(args.hello_runs):
                    row["records"].append(hello_run(args))
                continue
            if row["vmm"] == "qemu":
                row["argv"] = qemu_argv(args, row["accel"], row["cpu"], row["qemu_machine"],
                                        qemu_append["value"])
                row["append_source"] = qemu_append["source"]
            log(f"run {i + 1}/{args.runs}: {row['label'].strip()} ... (load {loadavg()})")
            rec = linux_run(row["argv"], row["timeout"], row["vmm"] == "petrel")
            rec["run"] = i + 1
            rec["argv"] = row["argv"]
            rec["loadavg_after"] = loadavg()
            row["records"].append(rec)
            if rec["ok"]:
                log(f"  Run /init after {rec['run_init_ms'] / 1e3:.2f} s")
            else:
                log(f"  FAILED: {rec['error']}")
                if rec.get("stderr_tail"):
                    log("  " + rec["stderr_tail"].replace("\n", "\n  "))
            if row["vmm"] == "petrel" and rec.get("kernel_cmdline") and not args.qemu_append:
                seen_cmdlines.add(rec["kernel_cmdline"])
                qemu_append["value"] = rec["kernel_cmdline"]
                qemu_append["source"] = "the kernel's 'Command line:' in petrel's boot"
            if row["vmm"] == "qemu" and auto and row["accel"] == "kvm" and not rec["ok"] \
                    and rec.get("first_byte_ms") is None:
                # A failure before the first console byte (QEMU cannot start the VM) is not
                # worth repeating; one after it is: how far QEMU got, and how fast, compares
                # with petrel under the same emulator.
                row["disabled"] = True
                notes.append(f"QEMU -accel kvm -cpu {row['cpu']} failed before any console "
                             f"output ({rec['error']}); not run again (--qemu-accel auto)")
                log("  -> not run again")

    summarise(rows)
    milestones = compare_milestones(rows)
    if any(r["vmm"] == "qemu" and r["accel"] == "tcg" and r["records"] for r in rows) and auto:
        notes.append("every QEMU -accel kvm row failed, so QEMU was measured with -accel tcg "
                     "(the 'tcg' row): no KVM, QEMU's own JIT (different machine options: "
                     f"-M {args.qemu_machine_tcg})")
    if len(seen_cmdlines) > 1:
        notes.append("petrel's kernel reported different command lines in different runs "
                     f"(petrel rebuilt?): {sorted(seen_cmdlines)}")
    if any(r["vmm"] == "qemu" and r["records"] for r in rows):
        notes.append(f"QEMU version: {qemu_version(args.qemu)}")
        notes.append("QEMU boots the PVH vmlinux through its microvm firmware (qboot) and "
                     "fw_cfg; petrel enters the PVH entry point directly")
        notes.append("QEMU's -append: " + qemu_append["source"])
    if stamp(args.petrel) != binaries["petrel"]:
        notes.append(f"{args.petrel} changed during the benchmark (rebuilt?)")
    for row in rows:
        row.pop("disabled", None)
        if row["vmm"] == "qemu" and row["argv"] is None:
            row["argv"] = qemu_argv(args, row["accel"], row["cpu"], row["qemu_machine"],
                                    qemu_append["value"])
            row["not_run"] = True

    result = {"date": started, "host": dict(host, loadavg_end=loadavg()),
              "memory": args.memory, "vcpus": args.vcpus, "petrel_cmdline": args.cmdline,
              "qemu_append": qemu_append["value"], "kernel_cmdlines_seen": sorted(seen_cmdlines),
              "runs": args.runs, "hello_runs_per_run": args.hello_runs,
              "binaries": binaries, "rows": rows, "notes": notes}
    result["ratios"] = ratios(rows, milestones)
    result["milestones"] = milestones
    for row in rows:
        for rec in row["records"]:
            rec.pop("_lines", None)
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
        log(f"linux_boot_bench: {e}")
        sys.exit(1)
