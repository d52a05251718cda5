"""A fake petrel control API (docs/api.md contract) on a Unix socket, for petrelctl's tests.

FakePetrel keeps a tiny lifecycle (created/running/paused/shutting-down/shut-off), answers
the documented resources and errors, records every request, and streams /v1/events as
chunked NDJSON. Each instance serves on its own thread until stop().
"""

import json
import os
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

# action -> (states it is legal in, the state it leads to); shutdown is special (202).
TRANSITIONS = {
    "start": ({"created"}, "running"),
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
    "reboot": ({"running", "paused"}, "running"),
    "stop": ({"created", "running", "paused", "shutting-down"}, "shut-off"),
    "shutdown": ({"running", "paused"}, "shutting-down"),
}


MIGRATION_PUTS = {
    "/v1/vm/snapshot": {"path"},
    "/v1/vm/restore": {"path", "paused"},
    "/v1/migration/send": {"destination", "downtime_ms", "timeout_ms", "max_rounds"},
    "/v1/migration/receive": {"listen", "timeout_ms"},
    "/v1/migration/cancel": set(),
}


def error_body(code, message, **extra):
    error = {"code": code, "message": message, "chain": [message]}
    error.update(extra)
    return {"error": error}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakePetrel:
    def __init__(self, path, name="vm1", state="running", shutdown_after=None,
                 exit_on_shutdown=False):
        self.path = path
        self.name = name
        self.state = state
        # Seconds until a requested shutdown completes (None: never, the guest ignores it).
        self.shutdown_after = shutdown_after
        self.exit_on_shutdown = exit_on_shutdown  # petrel exits instead of reporting shut-off
        self.fail_info = False  # GET /v1/vm answers 500
        self.end_streams = False  # event streams end after the history
        self.restorable = False  # PUT /v1/vm/restore succeeds (a petrel without a VM)
        # How a started migration ends: each GET /v1/migration advances it one step through
        # precopy rounds 1 and 2 and stop-and-copy, then to this phase.
        self.migration_outcome = "completed"
        self.migration = self._migration_status("none", "idle", "")
        self.migration_steps = 0
        # The balloon: None (no device, 404) or what GET /v1/balloon answers; the guest
        # "follows" a new target at once. balloon_stats is GET /v1/balloon/stats's answer.
        self.balloon = None
        self.balloon_stats = None
        self.requests = []  # (method, path, body)
        self.events = []
        self.lock = threading.Condition()
        self.stopping = False
        self._add_event("state", {"from": "created", "to": "running", "action": "start"})
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._handle(self, "GET")

            def do_PUT(self):
                fake._handle(self, "PUT")

            def do_POST(self):
                fake._handle(self, "POST")

        self.server = _Server(path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        self.server.shutdown()
        self.server.server_close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _add_event(self, kind, data):
        # Called with or without the lock held (Condition's lock is reentrant-free: callers
        # outside handlers hold nothing).
        seq = len(self.events) + 1
        t = time.gmtime()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", t) + ".%03dZ" % (seq % 1000)
        self.events.append({"seq": seq, "time": stamp, "type": kind, "data": data})

    def _set_state(self, new, action):
        old = self.state
        self.state = new
        self._add_event("state", {"from": old, "to": new, "action": action})
        self.lock.notify_all()

    def info(self):
        return {"name": self.name, "state": self.state, "vcpus": 2, "memory_bytes": 512 << 20,
                "uptime_seconds": 3723.25, "started_at": "2026-11-22T04:00:00Z",
                "boot_count": 1, "exec_mode": "PVM emulated", "version": "0.1.0",
                "pid": 4242}

    def _reply(self, handler, status, body, content_type="application/json", headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers:
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler, method):
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            self.requests.append((method, url.path, body.decode("utf-8", "replace")))
        routes = {
            "/v1/vm": {"GET"}, "/v1/vm/state": {"GET"}, "/v1/vm/config": {"GET"},
            "/v1/metrics": {"GET"}, "/v1/metrics/prometheus": {"GET"}, "/v1/events": {"GET"},
        }
        for action in TRANSITIONS:
            routes["/v1/vm/" + action] = {"PUT"}
        for path in MIGRATION_PUTS:
            routes[path] = {"PUT"}
        routes["/v1/migration"] = {"GET"}
        routes["/v1/balloon"] = {"GET", "PUT"}
        routes["/v1/balloon/stats"] = {"GET"}
        if url.path not in routes:
            return self._reply(handler, 404, error_body("not_found", "no such resource"))
        if method not in routes[url.path]:
            allow = ", ".join(sorted(routes[url.path]))
            return self._reply(handler, 405, error_body("method_not_allowed", "method"),
                               headers=[("Allow", allow)])
        if url.path == "/v1/events":
            return self._stream_events(handler, parse_qs(url.query))
        with self.lock:
            if url.path.startswith("/v1/balloon"):
                return self._balloon(handler, method, url.path, body)
            if method == "PUT" and url.path in MIGRATION_PUTS:
                return self._migration_put(handler, url.path, body)
            if method == "PUT":
                return self._action(handler, url.path.rsplit("/", 1)[1], body)
            if url.path == "/v1/migration":
                self._advance_migration()
                return self._reply(handler, 200, self.migration)
            if url.path == "/v1/vm":
                if self.fail_info:
                    return self._reply(handler, 500, error_body("internal", "it broke"))
                return self._reply(handler, 200, self.info())
            if url.path == "/v1/vm/state":
                return self._reply(handler, 200, {"state": self.state})
            if url.path == "/v1/vm/config":
                return self._reply(handler, 200, {"name": self.name, "vcpus": 2,
                                                  "memory_mib": 512})
            if url.path == "/v1/metrics":
                return self._reply(handler, 200, {
                    "name": self.name, "state": self.state, "uptime_seconds": 12.5,
                    "guest_memory_bytes": 512 << 20, "host_rss_bytes": 30 << 20,
                    "vcpus": [{"id": 0, "cpu_time_ns": 5, "exits": {"io": 3, "hlt": 1}}],
                    "disks": [], "nets": [],
                    "api": {"requests_total": len(self.requests),
                            "responses_by_status": {"200": 1}}})
            text = ('# HELP petrel_up 1 while the VM runs\n# TYPE petrel_up gauge\n'
                    'petrel_up{vm="%s"} 1\n' % self.name)
            return self._reply(handler, 200, text.encode(),
                               "text/plain; version=0.0.4; charset=utf-8")

    def _action(self, handler, action, body):
        fields = {}
        if body.strip():
            try:
                fields = json.loads(body)
            except ValueError:
                return self._reply(handler, 400, error_body("invalid_argument", "bad JSON"))
            if not isinstance(fields, dict):
                return self._reply(handler, 400, error_body("invalid_argument", "not an object"))
        allowed = {"timeout_ms"} if action == "shutdown" else set()
        if set(fields) - allowed:
            return self._reply(handler, 400, error_body("invalid_argument", "unknown field"))
        timeout = fields.get("timeout_ms", 30000)
        if type(timeout) is not int or not 1 <= timeout <= 3600000:
            return self._reply(handler, 400, error_body("invalid_argument", "bad timeout_ms"))
        legal, new = TRANSITIONS[action]
        if self.state not in legal:
            message = "cannot %s: the VM is %s" % (action, self.state)
            return self._reply(handler, 409, error_body("state", message, state=self.state))
        self._set_state(new, action)
        if action == "shutdown":
            if self.shutdown_after is not None:
                threading.Timer(self.shutdown_after, self._finish_shutdown).start()
            return self._reply(handler, 202, {"state": new})
        return self._reply(handler, 200, {"state": new})

    @staticmethod
    def _migration_status(role, phase, peer):
        return {"role": role, "phase": phase, "peer": peer, "round": 0, "bytes": 0,
                "pages": 0, "remaining_bytes": 0, "dirty_rate_bytes_per_s": 0,
                "bandwidth_bytes_per_s": 0, "expected_downtime_ms": 0, "elapsed_ms": 0,
                "total_ms": None, "downtime_ms": None, "error": None}

    def _migration_active(self):
        return self.migration["phase"] not in ("idle", "completed", "failed", "cancelled")

    def _advance_migration(self):
        m = self.migration
        if not self._migration_active():
            return
        self.migration_steps += 1
        m["elapsed_ms"] = 100 * self.migration_steps
        if self.migration_steps <= 2:
            m.update(phase="precopy", round=self.migration_steps,
                     bytes=self.migration_steps << 30, pages=self.migration_steps << 18,
                     remaining_bytes=(3 - self.migration_steps) << 28,
                     dirty_rate_bytes_per_s=100 << 20, bandwidth_bytes_per_s=800 << 20,
                     expected_downtime_ms=120)
        elif self.migration_steps == 3:
            m.update(phase="stop-and-copy", round=3, remaining_bytes=16 << 20)
        elif self.migration_outcome == "completed":
            m.update(phase="completed", remaining_bytes=0, total_ms=1234, downtime_ms=56)
        else:
            m.update(phase=self.migration_outcome,
                     error="connection reset by peer\x1b[31m")

    def _migration_put(self, handler, path, body):
        fields = {}
        if body.strip():
            try:
                fields = json.loads(body)
            except ValueError:
                return self._reply(handler, 400, error_body("invalid_argument", "bad JSON"))
        if not isinstance(fields, dict) or set(fields) - MIGRATION_PUTS[path]:
            return self._reply(handler, 400, error_body("invalid_argument", "unknown field"))
        for key in ("path", "destination", "listen"):
            if key in MIGRATION_PUTS[path] and not isinstance(fields.get(key), str):
                return self._reply(handler, 400,
                                   error_body("invalid_argument", key + " is required"))
        if "path" in fields and not fields["path"].startswith("/"):
            return self._reply(handler, 400, error_body("invalid_argument",
                                                        "field \"path\" must be absolute"))

        def refuse(message):
            return self._reply(handler, 409, error_body("state", message, state=self.state))

        if path == "/v1/vm/snapshot":
            if self.state != "paused":
                return refuse("cannot snapshot: the VM is " + self.state)
            return self._reply(handler, 200, {"path": fields["path"],
                                              "memory_bytes_written": 512 << 20,
                                              "state_bytes": 12800, "duration_ms": 830})
        if path == "/v1/vm/restore":
            if not self.restorable:
                return refuse("cannot restore: this petrel already has a VM")
            self._set_state("paused" if fields.get("paused") else "running", "restore")
            return self._reply(handler, 200, {"state": self.state})
        if path == "/v1/migration/cancel":
            if not self._migration_active():
                return refuse("cannot cancel: no migration is active")
            self.migration.update(phase="cancelled", error="cancelled through the API")
            return self._reply(handler, 200, self.migration)
        if self._migration_active():
            return refuse("cannot migrate: a migration is already active")
        if path == "/v1/migration/send":
            if self.state not in ("running", "paused"):
                return refuse("cannot migrate: the VM is " + self.state)
            self.migration = self._migration_status("send", "connecting", fields["destination"])
        else:
            self.migration = self._migration_status("receive", "listening", fields["listen"])
        self.migration_steps = 0
        return self._reply(handler, 202, self.migration)

    def _balloon(self, handler, method, path, body):
        if self.balloon is None:
            return self._reply(handler, 404, error_body("not_found",
                                                        "the VM has no balloon device"))
        if path == "/v1/balloon/stats":
            return self._reply(handler, 200, self.balloon_stats)
        if method == "GET":
            return self._reply(handler, 200, self.balloon)
        try:
            fields = json.loads(body or b"{}")
        except ValueError:
            return self._reply(handler, 400, error_body("invalid_argument", "bad JSON"))
        if not isinstance(fields, dict) or len(fields) != 1 or \
                not set(fields) <= {"target_bytes", "guest_memory_bytes"}:
            return self._reply(handler, 400, error_body("invalid_argument", "one field"))
        ram = self.balloon["memory_bytes"]
        if "guest_memory_bytes" in fields:
            if fields["guest_memory_bytes"] > ram:
                return self._reply(handler, 400, error_body("invalid_argument",
                                                            "more than the guest's RAM"))
            target = ram - fields["guest_memory_bytes"]
        else:
            target = fields["target_bytes"]
        if target % 4096 or target >= ram:
            return self._reply(handler, 400, error_body(
                "invalid_argument", "the balloon target must be a multiple of 4 KiB below "
                "the guest's RAM"))
        if self.state not in ("created", "running", "paused"):
            return self._reply(handler, 409, error_body(
                "state", "cannot set the balloon target: the VM is " + self.state,
                state=self.state))
        self.balloon.update(target_bytes=target, actual_bytes=target,
                            guest_memory_bytes=ram - target)
        return self._reply(handler, 200, self.balloon)

    def _finish_shutdown(self):
        if self.exit_on_shutdown:
            self.stop()
            return
        with self.lock:
            if self.state == "shutting-down":
                self._set_state("shut-off", "guest-stopped")

    def _stream_events(self, handler, query):
        after = None
        if "after" in query:
            try:
                after = int(query["after"][0])
            except ValueError:
                return self._reply(handler, 400, error_body("invalid_argument", "after"))
        handler.send_response(200)
        handler.send_header("Content-Type", "application/x-ndjson")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def chunk(data):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            handler.wfile.flush()

        with self.lock:
            sent = len(self.events) if after is None else min(after, len(self.events))
        try:
            while True:
                with self.lock:
                    pending = self.events[sent:]
                    sent = len(self.events)
                    if not pending:
                        if self.stopping or self.end_streams:
                            break
                        self.lock.wait(0.2)
                        continue
                for event in pending:
                    line = json.dumps(event).encode() + b"\n"
                    # Split each line in two chunks: the client must reassemble lines.
                    chunk(line[:5])
                    chunk(line[5:])
            chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True


def silent_socket(path):
    """A socket that accepts connections (the kernel's backlog) but never answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(8)
    return sock


def dead_socket(path):
    """A socket file nobody listens on (petrel crashed): connect is refused."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    return sock
