"""Notification benchmark: the fan-out and the webhook sender against baselines measured in the
same run, on SQLite (or --db-url).

    python bench/notify.py [--cases 300] [--subs 10] [--db-url postgresql://…]

1. fan-out: every status change queued for S subscriptions and named reporters, against a
   plain read of the same history rows (the floor: what any notifier must at least read).
2. webhooks: signed deliveries with their bookkeeping to a local HTTP receiver, against bare
   httpx POSTs of the same bodies to it.
Prints rates, CPU per item and the ratios; the absolute numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from sqlalchemy import select  # noqa: E402

from pipeline.db import HistoryRow  # noqa: E402
from pipeline.media import sha256_hex  # noqa: E402
from pipeline.notify import fan_out  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store import SqlCaseStore  # noqa: E402
from pipeline.types import Report  # noqa: E402
from pipeline.webhooks import create_subscription, deliver_due  # noqa: E402


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _timed(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> int:
    """Run both measurements and print them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--subs", type=int, default=10)
    ap.add_argument("--db-url", default="")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    settings = Settings(
        home=home, database_url=args.db_url, webhook_allow_private=True, notify_gap_grace_s=0
    )
    store = SqlCaseStore(settings.database_url)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    subs = [create_subscription(store, settings, owner="bench", url=url) for _ in range(args.subs)]
    for i in range(args.cases):
        named = i % 2 == 0
        report = Report(
            photo_sha256=sha256_hex(f"bench {i}".encode()), photo_content_type="image/jpeg",
            lat=42.37, lon=-71.11, category="pothole", anonymous=not named,
            contact_email="r@example.org" if named else None,
        )  # fmt: skip
        cid = store.create_case(report, 10)
        for status in ("open", "in_progress", "closed"):
            store.transition(cid, status, by="crew:bench", why="bench")  # type: ignore[arg-type]

    def floor() -> int:
        with store.session() as s:
            return len(s.execute(select(HistoryRow)).all())

    def drain() -> tuple[int, int, int]:
        events = deliveries = messages = 0
        while (done := fan_out(store, settings)).events:
            events, deliveries = events + done.events, deliveries + done.deliveries
            messages += done.messages
        return events, deliveries, messages

    fw, _, n_rows = _timed(floor)
    w, c, (events, deliveries, messages) = _timed(drain)
    print(
        f"fan-out: {events} events -> {deliveries} deliveries + {messages} messages in {w:.2f} s "
        f"= {events / w:.0f} events/s, CPU {c / events * 1e3:.2f} ms/event; "
        f"plain read of {n_rows} rows {fw * 1e3:.0f} ms; "
        f"ratio fan-out/read {w / max(fw, 1e-9):.1f}x"
    )
    n = min(deliveries, 400)
    body = b'{"id":1,"type":"case.status_changed","status":"open"}'

    def bare() -> int:
        with httpx.Client() as client:
            for _ in range(n):
                client.post(url, content=body, headers={"Content-Type": "application/json"})
        return n

    def sender() -> int:
        sent = 0
        while sent < n:
            got = deliver_due(store, settings, limit=min(50, n - sent))
            if not got:
                break
            sent += got
        return sent

    bw, _, _ = _timed(bare)
    dw, dc, sent = _timed(sender)
    print(
        f"webhooks: {sent} signed deliveries in {dw:.2f} s = {sent / dw:.0f}/s, CPU "
        f"{dc / sent * 1e3:.2f} ms/delivery; bare POSTs {n / bw:.0f}/s; "
        f"ratio bare/ours {(n / bw) / (sent / dw):.1f}x ({len(subs)} subscriptions)"
    )
    srv.shutdown()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
