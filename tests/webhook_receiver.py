"""A real webhook receiver for the tests: an HTTP server in a thread that checks every
request's StreetLens-Signature and can fail (500) or stall its first N requests."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline.webhooks import SIGNATURE_HEADER, verify_signature


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        """The JSON body."""
        return json.loads(self.body)


@dataclass
class Receiver:
    """Start with `start()`; `url` is where it listens; `requests` what arrived."""

    secret: str = ""
    fail_first: int = 0  # answer 500 to this many requests first
    stall_first: int = 0  # ...or sleep this many requests past the sender's timeout
    stall_s: float = 2.0
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        """Listen on a free port in a daemon thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                ok = verify_signature(receiver.secret, self.headers.get(SIGNATURE_HEADER, ""), body)
                with receiver._lock:
                    n = len(receiver.requests)
                    code = 200 if ok else 400
                    if n < receiver.stall_first:
                        code = 503
                    elif n < receiver.stall_first + receiver.fail_first:
                        code = 500
                    receiver.requests.append(
                        Received(self.path, dict(self.headers), body, ok, code)
                    )
                if n < receiver.stall_first:
                    time.sleep(receiver.stall_s)
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        """The receiver's URL."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()
