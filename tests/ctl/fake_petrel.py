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
        if url.path not in routes:
            return self._reply(handler, 404, error_body("not_found", "no such resource"))
        if method not in routes[url.path]:
            allow = ", ".join(sorted(routes[url.path]))
            return self._reply(handler, 405, error_body("method_not_allowed", "method"),
                               headers=[("Allow", allow)])
        if url.path == "/v1/events":
            return self._stream_events(handler, parse_qs(url.query))
        with self.lock:
            if method == "PUT":
                return self._action(handler, url.path.rsplit("/", 1)[1], body)
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
