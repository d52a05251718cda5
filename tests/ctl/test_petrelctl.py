#!/usr/bin/env python3
"""Runs the real petrelctl binary against fake petrel API servers (fake_petrel.py) and checks
output and exit codes for every verb, the error classes and `list`.

Usage: test_petrelctl.py PATH/TO/petrelctl
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_petrel import FakePetrel, dead_socket, silent_socket  # noqa: E402

PETRELCTL = os.path.abspath(sys.argv[1])
failures = []


def ctl(*args, env_dir=None, timeout=20):
    env = dict(os.environ)
    env.pop("PETREL_DIR", None)
    if env_dir is not None:
        env["PETREL_DIR"] = env_dir
    proc = subprocess.run([PETRELCTL, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
    return proc.returncode, proc.stdout, proc.stderr


def check(name, condition, detail=""):
    if condition:
        print("ok   " + name)
    else:
        print("FAIL " + name + (": " + detail if detail else ""))
        failures.append(name)


def expect(name, args, code, stdout=None, stderr=None, contains=(), **kw):
    rc, out, err = ctl(*args, **kw)
    detail = "rc=%d stdout=%r stderr=%r" % (rc, out, err)
    ok = rc == code
    if stdout is not None:
        ok = ok and out == stdout
    if stderr is not None:
        ok = ok and err == stderr
    for text in contains:
        ok = ok and (text in out or text in err)
    check(name, ok, detail)
    return rc, out, err


def garbage_server(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(4)

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.recv(4096)
            conn.sendall(b"this is not HTTP\r\n\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock


def main():
    tmp = tempfile.mkdtemp(prefix="petrelctl-test-")
    try:
        run_tests(tmp)
        run_migration_tests(tmp)
        run_balloon_tests(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d failed: %s" % (len(failures), ", ".join(failures)))
        return 1
    print("all passed")
    return 0


def run_tests(tmp):
    sock = os.path.join(tmp, "vm1.sock")
    fake = FakePetrel(sock, name="vm1")
    s = ["-s", sock]

    # Help and usage.
    expect("help", ["help"], 0, contains=["Usage: petrelctl", "Exit status", "shutdown"])
    expect("-h", ["-h"], 0, contains=["Usage: petrelctl"])
    for verb in ["info", "state", "config", "pause", "resume", "shutdown", "reboot", "stop",
                 "start", "metrics", "events", "list"]:
        expect(verb + " --help", [verb, "--help"], 0, contains=["Usage: petrelctl", verb])
    expect("no args: usage, 2", [], 2, contains=["Usage: petrelctl"])
    expect("unknown verb: 2", ["frob"], 2, stdout="", contains=["petrelctl: unknown verb"])
    expect("missing socket: 2", ["pause"], 2, contains=["needs the VM's socket"])
    expect("bad option: 2", s + ["shutdown", "--timeout", "x"], 2)
    check("usage error sent nothing", fake.requests == [], repr(fake.requests))

    # Reading verbs.
    rc, out, _ = expect("info", s + ["info"], 0)
    check("info: aligned name", "name:       vm1\n" in out, out)
    check("info: memory in MiB", "memory:     512 MiB\n" in out, out)
    check("info: uptime", "uptime:     1h02m03s\n" in out, out)
    rc, out, _ = expect("info --json", s + ["--json", "info"], 0)
    check("info --json is the API's JSON", json.loads(out)["pid"] == 4242, out)
    expect("state", s + ["state"], 0, stdout="running\n")
    expect("state --json", s + ["state", "--json"], 0, stdout='{"state": "running"}\n')
    rc, out, _ = expect("config", s + ["config"], 0)
    check("config is pretty JSON", json.loads(out)["memory_mib"] == 512 and "\n  " in out, out)
    rc, out, _ = expect("metrics", s + ["metrics"], 0)
    check("metrics readable", "host_rss_bytes:" in out and "30 MiB" in out and
          "exits.io=3" in out, out)
    rc, out, _ = expect("metrics --json", s + ["metrics", "--json"], 0)
    check("metrics --json", json.loads(out)["name"] == "vm1", out)
    expect("metrics --prometheus", s + ["metrics", "--prometheus"], 0,
           contains=['petrel_up{vm="vm1"} 1', "# TYPE petrel_up gauge"])

    # Bare name resolution against --dir and $PETREL_DIR.
    expect("-s NAME with --dir", ["--dir", tmp, "-s", "vm1", "state"], 0, stdout="running\n")
    expect("-s NAME with $PETREL_DIR", ["-s", "vm1", "state"], 0, stdout="running\n",
           env_dir=tmp)

    # Actions and the state machine; 409 is exit 4 with the API's message.
    expect("pause", s + ["pause"], 0, stdout="paused\n")
    check("pause sent PUT with no body", fake.requests[-1] == ("PUT", "/v1/vm/pause", ""),
          repr(fake.requests[-1]))
    expect("pause again: 409 -> 4", s + ["pause"], 4, stdout="",
           stderr="petrelctl: cannot pause: the VM is paused\n")
    expect("resume", s + ["resume"], 0, stdout="running\n")
    expect("resume again: 4", s + ["resume"], 4, stderr="petrelctl: cannot resume: the VM is "
           "running\n")
    expect("start while running: 4", s + ["start"], 4)
    expect("reboot", s + ["reboot"], 0, stdout="running\n")
    expect("reboot --json", s + ["reboot", "--json"], 0, stdout='{"state": "running"}\n')

    # Events: history replay, --count, the readable line format.
    rc, out, _ = expect("events --after 0 --count 3", s + ["events", "--after", "0", "--count",
                                                          "3"], 0)
    lines = out.splitlines()
    check("events: 3 lines", len(lines) == 3, out)
    check("events: readable state line",
          len(lines) == 3 and lines[1].endswith(" state running -> paused (pause)") and
          lines[1][:4].isdigit() and lines[1][19:24] == ".002Z", out)
    rc, out, _ = expect("events --json", s + ["events", "--after", "4", "--count", "1", "--json"],
                        0)
    check("events --json is NDJSON", json.loads(out)["seq"] == 5, out)
    check("events sent ?after", fake.requests[-1][1] == "/v1/events", repr(fake.requests[-1]))
    # Without --after: only new events; one arrives while petrelctl waits.
    proc = subprocess.Popen([PETRELCTL, *s, "events", "--count", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    check("events waits for a new event", proc.poll() is None)
    ctl(*s, "pause")
    out, err = proc.communicate(timeout=10)
    check("events: the new event only", proc.returncode == 0 and
          out.strip().endswith("state running -> paused (pause)") and len(out.splitlines()) == 1,
          "rc=%s out=%r err=%r" % (proc.returncode, out, err))
    ctl(*s, "resume")
    fake.end_streams = True
    rc, out, _ = expect("events: stream end is exit 0", s + ["events", "--after", "0"], 0)
    check("events: all history", len(out.splitlines()) == len(fake.events), out)
    expect("events --count beyond the end: 3", s + ["events", "--after", "0", "--count", "99"],
           3, contains=["event stream ended"])
    fake.end_streams = False

    # Shutdown: body, 202, --wait.
    expect("shutdown --timeout 1.5", s + ["shutdown", "--timeout", "1.5"], 0,
           stdout="shutting-down\n")
    check("shutdown sent timeout_ms", fake.requests[-1] == ("PUT", "/v1/vm/shutdown",
                                                            '{"timeout_ms":1500}'),
          repr(fake.requests[-1]))
    expect("shutdown twice: 4", s + ["shutdown"], 4, contains=["cannot shutdown"])
    expect("stop", s + ["stop"], 0, stdout="shut-off\n")
    expect("stop when shut off: 4", s + ["stop"], 4)
    fake.stop()

    fake = FakePetrel(sock, name="vm1", shutdown_after=0.6)
    rc, out, _ = expect("shutdown --wait until shut-off", s + ["shutdown", "--wait"], 0,
                        stdout="shut-off\n")
    check("shutdown without body", fake.requests[0] == ("PUT", "/v1/vm/shutdown", ""),
          repr(fake.requests[0]))
    fake.stop()
    fake = FakePetrel(sock, name="vm1", shutdown_after=0.6, exit_on_shutdown=True)
    expect("shutdown --wait until petrel exits", s + ["shutdown", "--wait"], 0, stdout="exited\n")
    fake = FakePetrel(sock, name="vm1", state="created")
    expect("start from created", s + ["start"], 0, stdout="running\n")
    fake.fail_info = True
    expect("HTTP 500 -> 1 with the message", s + ["info"], 1, stdout="",
           stderr="petrelctl: it broke\n")
    fake.fail_info = False

    # Cannot connect: exit 3.
    missing = os.path.join(tmp, "nope.sock")
    expect("no socket: 3", ["-s", missing, "state"], 3, stdout="",
           contains=["cannot connect to " + missing])
    dead_path = os.path.join(tmp, "dead.sock")
    dead = dead_socket(dead_path)
    expect("nobody listening: 3", ["-s", dead_path, "pause"], 3, contains=["cannot connect"])
    silent_path = os.path.join(tmp, "silent.sock")
    silent = silent_socket(silent_path)
    start = time.monotonic()
    expect("timeout: 3", ["--timeout", "0.5", "-s", silent_path, "info"], 3,
           contains=["timed out"])
    check("timeout honoured", time.monotonic() - start < 5)
    expect("socket path too long: 3", ["-s", "/" + "x" * 200, "state"], 3,
           contains=["too long"])
    garbage_path = os.path.join(tmp, "garbage.sock")
    garbage = garbage_server(garbage_path)
    expect("not HTTP: 1", ["-s", garbage_path, "state"], 1, contains=["not a valid HTTP"])

    # list: sockets in the directory, unreachable ones included, other files ignored.
    other = os.path.join(tmp, "b-other.sock")
    fake2 = FakePetrel(other, name="web")
    open(os.path.join(tmp, "plain.sock"), "w").close()
    open(os.path.join(tmp, "notes.txt"), "w").close()
    rc, out, _ = expect("list", ["list", "--dir", tmp, "--timeout", "0.5"], 0)
    rows = [line.split() for line in out.splitlines()]
    check("list header", rows and rows[0] == ["NAME", "STATE", "VCPUS", "MEMORY", "UPTIME"], out)
    names = {row[0]: row[1:] for row in rows[1:]}
    check("list: name from the API", names.get("web") == ["running", "2", "512", "MiB",
                                                         "1h02m03s"], out)
    check("list: vm1", names.get("vm1", [""])[0] == "running", out)
    check("list: dead socket unreachable", names.get("dead") == ["unreachable", "-", "-", "-"],
          out)
    check("list: silent socket unreachable", names.get("silent", [""])[0] == "unreachable", out)
    check("list: garbage unreachable", names.get("garbage", [""])[0] == "unreachable", out)
    check("list: regular files ignored", "plain" not in names and "notes" not in names, out)
    check("list: 6 rows", len(rows) == 6, out)
    rc, out, _ = expect("list --json", ["--json", "list", "--timeout", "0.5"], 0, env_dir=tmp)
    parsed = json.loads(out)
    check("list --json", len(parsed) == 5 and {p["state"] for p in parsed} >=
          {"running", "unreachable"} and all("socket" in p for p in parsed), out)
    expect("list of a missing dir: header only", ["list", "--dir", os.path.join(tmp, "none")], 0,
           stdout="NAME  STATE  VCPUS  MEMORY  UPTIME\n")
    for s_ in (dead, silent, garbage):
        s_.close()
    fake2.stop()
    fake.stop()


def run_migration_tests(tmp):
    sock = os.path.join(tmp, "mig.sock")
    fake = FakePetrel(sock, name="mig")
    s = ["-s", sock]

    for verb in ["snapshot", "restore", "migrate", "migrate-receive", "migrate-status",
                 "migrate-cancel"]:
        expect(verb + " --help", [verb, "--help"], 0, contains=["Usage: petrelctl", verb])
    expect("help lists migrate", ["help"], 0, contains=["migrate-receive", "snapshot"])
    expect("snapshot without DIR: 2", s + ["snapshot"], 2, contains=["snapshot directory"])
    expect("migrate without DEST: 2", s + ["migrate"], 2, contains=["destination"])
    expect("migrate --downtime 0: 2", s + ["migrate", "tcp:h:1", "--downtime", "0"], 2)
    expect("migrate --max-rounds 1001: 2", s + ["migrate", "tcp:h:1", "--max-rounds", "1001"], 2)
    expect("migrate-receive --timeout 0.5: 2", s + ["migrate-receive", "tcp:h:1", "--timeout",
                                                    "0.5"], 2)
    expect("snapshot two dirs: 2", s + ["snapshot", "/a", "/b"], 2, contains=["unexpected"])
    check("usage errors sent nothing", fake.requests == [], repr(fake.requests))

    # Snapshot: 409 while running; --pause pauses, snapshots and resumes; relative -> absolute.
    expect("snapshot while running: 4", s + ["snapshot", "/srv/s1"], 4,
           stderr="petrelctl: cannot snapshot: the VM is running\n")
    rc, out, _ = expect("snapshot --pause", s + ["snapshot", "rel/s1", "--pause"], 0)
    want = os.path.join(os.getcwd(), "rel/s1")
    check("snapshot --pause readable",
          out == "snapshot %s: 512 MiB of memory, 12.5 KiB of state, in 830 ms\n" % want, out)
    check("snapshot --pause: pause, snapshot, resume",
          [r[1] for r in fake.requests[-3:]] == ["/v1/vm/pause", "/v1/vm/snapshot",
                                                 "/v1/vm/resume"] and
          json.loads(fake.requests[-2][2]) == {"path": want}, repr(fake.requests[-3:]))
    check("snapshot --pause: running again", fake.state == "running", fake.state)
    ctl(*s, "pause")
    rc, out, _ = expect("snapshot --json while paused", s + ["snapshot", "/srv/s2", "--json"], 0)
    check("snapshot --json", json.loads(out)["state_bytes"] == 12800, out)
    n = len(fake.requests)
    expect("snapshot --pause when already paused", s + ["snapshot", "/srv/s3", "--pause"], 0)
    check("already paused: stays paused, no resume",
          fake.state == "paused" and fake.requests[-1][1] == "/v1/vm/snapshot" and
          len(fake.requests) == n + 2, repr(fake.requests[n:]))
    ctl(*s, "resume")

    # Restore.
    expect("restore on a petrel with a VM: 4", s + ["restore", "/srv/s1"], 4,
           contains=["cannot restore"])
    fake.restorable = True
    expect("restore --paused", s + ["restore", "/srv/s1", "--paused"], 0, stdout="paused\n")
    check("restore body", json.loads(fake.requests[-1][2]) == {"path": "/srv/s1", "paused": True},
          repr(fake.requests[-1]))
    ctl(*s, "resume")

    # Migration status, start, cancel.
    rc, out, _ = expect("migrate-status idle", s + ["migrate-status"], 0)
    check("migrate-status readable", "phase:             idle\n" in out and
          "downtime:          -\n" in out and "error" not in out, out)
    expect("migrate-cancel with none: 4", s + ["migrate-cancel"], 4,
           contains=["no migration is active"])
    expect("migrate (no wait)", s + ["migrate", "tcp:10.0.0.2:4444", "--downtime", "50",
                                     "--timeout", "60", "--max-rounds", "5"], 0,
           stdout="migrating to tcp:10.0.0.2:4444\n")
    check("migrate body", json.loads(fake.requests[-1][2]) == {
        "destination": "tcp:10.0.0.2:4444", "downtime_ms": 50, "timeout_ms": 60000,
        "max_rounds": 5}, repr(fake.requests[-1]))
    expect("migrate while active: 4", s + ["migrate", "tcp:h:1"], 4, contains=["already active"])
    rc, out, _ = expect("migrate-status --json", s + ["migrate-status", "--json"], 0)
    check("migrate-status --json", json.loads(out)["phase"] == "precopy" and
          json.loads(out)["downtime_ms"] is None, out)
    expect("migrate-cancel", s + ["migrate-cancel"], 0, stdout="cancelled\n")
    rc, out, _ = expect("migrate-status after cancel", s + ["migrate-status"], 0)
    check("status shows the error", "error:             cancelled through the API\n" in out, out)

    # --wait reaching completed, with progress lines; then failed.
    rc, out, err = expect("migrate --wait completed", s + ["migrate", "unix:rel/m.sock",
                                                           "--wait"], 0)
    lines = out.splitlines()
    check("migrate --wait: progress then result",
          len(lines) == 4 and lines[0].startswith("precopy round 1: 1 GiB sent") and
          lines[2].startswith("stop-and-copy round 3") and
          lines[-1] == "migrated in 1234 ms, downtime 56 ms", out)
    sent = [r for r in fake.requests if r[1] == "/v1/migration/send"][-1]
    check("unix: relative path made absolute", json.loads(sent[2])["destination"] ==
          "unix:" + os.path.join(os.getcwd(), "rel/m.sock"), repr(sent))
    fake.migration_outcome = "failed"
    rc, out, err = expect("migrate-receive --wait failed: 1", s + ["migrate-receive",
                                                                   "tcp:0.0.0.0:4444", "--wait"],
                          1)
    check("failed: the error, control characters replaced",
          err == "petrelctl: migration failed: connection reset by peer?[31m\n", err)
    received = [r for r in fake.requests if r[1] == "/v1/migration/receive"][-1]
    check("receive body", json.loads(received[2]) == {"listen": "tcp:0.0.0.0:4444"},
          repr(received))
    fake.migration_outcome = "completed"
    rc, out, _ = expect("migrate --wait --json", s + ["migrate", "tcp:h:1", "--wait", "--json"],
                        0)
    check("--wait --json prints the final status", json.loads(out)["total_ms"] == 1234, out)
    fake.stop()
    expect("migrate-status, no server: 3", s + ["migrate-status"], 3)


def run_balloon_tests(tmp):
    sock = os.path.join(tmp, "bal.sock")
    fake = FakePetrel(sock, name="bal")
    s = ["-s", sock]

    for args, verb in ((["balloon"], "balloon"), (["balloon", "set"], "balloon set"),
                       (["balloon", "stats"], "balloon stats"), (["setmem"], "setmem")):
        expect(verb + " --help", args + ["--help"], 0,
               contains=["Usage: petrelctl -s SOCKET " + verb])
    expect("help lists balloon", ["help"], 0, contains=["balloon set", "setmem"])
    expect("balloon set without SIZE: 2", s + ["balloon", "set"], 2, contains=["a size"])
    expect("setmem junk: 2", s + ["setmem", "lots"], 2, contains=["not 'lots'"])
    expect("balloon bogus: 2", s + ["balloon", "pop"], 2, contains=["not 'pop'"])
    check("usage errors sent nothing", fake.requests == [], repr(fake.requests))

    # No balloon: 404 is an API error, exit 1, with the server's message.
    expect("balloon without a device: 1", s + ["balloon"], 1,
           stderr="petrelctl: the VM has no balloon device\n")
    expect("balloon stats without a device: 1", s + ["balloon", "stats"], 1)

    fake.balloon = {"target_bytes": 0, "actual_bytes": 0, "memory_bytes": 512 << 20,
                    "guest_memory_bytes": 512 << 20, "deflate_on_oom": True,
                    "stats_interval_s": 5, "free_page_reporting": False}
    fake.balloon_stats = {"swap_in": 0, "swap_out": 0, "major_faults": 12,
                          "minor_faults": 3456, "free_memory": 300 << 20,
                          "total_memory": 500 << 20, "available_memory": None,
                          "disk_caches": 40 << 20, "hugetlb_allocations": None,
                          "hugetlb_failures": None, "updated_at": "2026-11-22T05:00:00.000Z",
                          "age_seconds": 3.5, "unknown_tags": 0}
    expect("balloon", s + ["balloon"], 0, stdout=(
        "target:              0 B\n"
        "actual:              0 B\n"
        "guest memory:        512 MiB of 512 MiB\n"
        "deflate on OOM:      yes\n"
        "stats interval:      5s\n"
        "free page reporting: no\n"))
    rc, out, _ = expect("balloon set 128M", s + ["balloon", "set", "128M"], 0,
                        contains=["target:              128 MiB",
                                  "guest memory:        384 MiB of 512 MiB"])
    check("balloon set sent target_bytes",
          fake.requests[-1][:2] == ("PUT", "/v1/balloon") and
          json.loads(fake.requests[-1][2]) == {"target_bytes": 128 << 20},
          repr(fake.requests[-1]))
    expect("setmem 448M", s + ["setmem", "448M"], 0, contains=["target:              64 MiB"])
    check("setmem sent guest_memory_bytes",
          json.loads(fake.requests[-1][2]) == {"guest_memory_bytes": 448 << 20},
          repr(fake.requests[-1]))
    rc, out, _ = expect("balloon --json", s + ["balloon", "--json"], 0)
    check("balloon --json is the API's JSON", json.loads(out) == fake.balloon, out)
    expect("balloon set 512M: 1", s + ["balloon", "set", "512M"], 1,
           contains=["below the guest's RAM"])
    expect("setmem 1G: 1", s + ["setmem", "1G"], 1, contains=["more than the guest's RAM"])

    expect("balloon stats", s + ["balloon", "stats"], 0, contains=[
        "free memory:         300 MiB\n", "available memory:    -\n",
        "disk caches:         40 MiB\n", "major faults:        12\n",
        "updated:             2026-11-22T05:00:00.000Z (3s ago)\n"])
    rc, out, _ = expect("balloon stats --json", s + ["balloon", "stats", "--json"], 0)
    check("balloon stats --json keeps nulls", json.loads(out)["available_memory"] is None, out)

    ctl(*s, "stop")
    expect("balloon set after stop: 4", s + ["balloon", "set", "64M"], 4,
           stderr="petrelctl: cannot set the balloon target: the VM is shut-off\n")
    fake.stop()


if __name__ == "__main__":
    sys.exit(main())
