"""The `streetlens` command: process photos, run the demo, serve, work, train."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.errors import StreetLensError
from pipeline.settings import Settings
from vision.errors import VisionError


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "city", None):
        overrides["city"] = args.city
    return Settings(**overrides)


def summarize(case, label: str) -> str:
    """A few human lines about one processed case."""
    lines = [f"{label}  →  case {case.id}  [{case.status}]"]
    for f in case.findings[:5]:
        m = f.measurement
        if m.area_m2 is not None and m.area_m2_interval:
            lo, hi = m.area_m2_interval
            size = f"{m.area_m2:.2f} m² (90%: {lo:.2f}–{hi:.2f}, {m.method})"
        else:
            size = f"{m.area_px:.0f} px² (no metric scale)"
        lines.append(f"    found  {f.class_name:<9} {f.confidence:5.0%}   area {size}")
    if not case.findings:
        lines.append("    found  nothing the detector knows; left for a person to review")
    p = case.place or {}
    where = p.get("address") or p.get("interpolated_address") or "no address"
    lines.append(
        f"    where  parcel {p.get('parcel_id') or '-'} · {where}"
        f" · street {p.get('street_name') or '-'}"
        f" ({p.get('road_owner') or '?'} road)"
        + ("" if p.get("in_jurisdiction") else " · OUTSIDE the city")
    )
    if case.routing:
        r = case.routing
        due = r.due_at.strftime("%Y-%m-%d %H:%M UTC") if r.due_at else "-"
        lines.append(
            f"    routed {r.department} · priority {r.priority} · due {due} · "
            f"category {case.category} · severity {case.severity or '-'}"
        )
    return "\n".join(lines)


def _process_paths(
    settings: Settings, paths: list[Path], form_kw: dict
) -> list[tuple[Path, object]]:
    from tqdm import tqdm

    from pipeline import intake
    from pipeline.context import Context
    from pipeline.process import process_case

    ctx = Context(settings)
    results = []
    for path in tqdm(paths, desc="photos", unit="photo", file=sys.stderr, disable=len(paths) < 2):
        try:
            case_id = intake.submit(ctx, path.read_bytes(), intake.ReportForm(**form_kw), by="cli")
            results.append((path, process_case(ctx, case_id, by="cli")))
        except StreetLensError as exc:
            results.append((path, exc))
    return results


def cmd_process(args: argparse.Namespace) -> int:
    """streetlens process PHOTO...: enriched GeoJSON Features, one per photo."""
    from pipeline.geojson import case_feature

    settings = _settings(args)
    form = {"lat": args.lat, "lon": args.lon, "heading": args.heading, "category": args.category}
    results = _process_paths(settings, args.photos, form)
    features, failed = [], 0
    for path, res in results:
        if isinstance(res, StreetLensError):
            failed += 1
            print(f"{path}: rejected: {res}", file=sys.stderr)
            continue
        features.append(case_feature(res, photo=str(path)))
        print(summarize(res, path.name), file=sys.stderr)
    if args.output:
        out = {"type": "FeatureCollection", "features": features}
        args.output.write_text(json.dumps(out, indent=1))
        print(f"wrote {len(features)} feature(s) to {args.output}", file=sys.stderr)
    else:
        for feat in features:
            print(json.dumps(feat))
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """streetlens demo: make the demo city's photos and process them all."""
    from pipeline.context import Context
    from pipeline.demo import prepare_demo
    from pipeline.geojson import case_feature

    settings = _settings(args)
    ctx = Context(settings)
    out_dir = settings.home / "demo" / "photos"
    print(f"StreetLens demo — {ctx.city.name}; state in {settings.home}", flush=True)
    photos = prepare_demo(ctx, out_dir, per_source=args.per_source)
    print(f"{len(photos)} sample photos placed on real streets in {out_dir}\n", flush=True)
    results = _process_paths(settings, [p.path for p in photos], {})
    features = []
    for path, res in results:
        if isinstance(res, StreetLensError):
            print(f"{path.name}: rejected: {res}")
            continue
        features.append(case_feature(res, photo=str(path)))
        print(summarize(res, path.name) + "\n")
    out = args.output or settings.home / "demo" / "cases.geojson"
    out.write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1))
    print(f"{len(features)} cases written to {out} (open it in QGIS or geojson.io)")
    print(
        "Serve the API and a worker with:  .venv/bin/streetlens serve   (http://127.0.0.1:8000/docs)"
    )
    return 0 if len(features) == len(photos) else 1


def _worker_cmd(concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "pipeline.tasks", "worker",
        "--pool=solo" if concurrency == 1 else "--pool=prefork",
        f"--concurrency={concurrency}", "--loglevel=INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def cmd_worker(args: argparse.Namespace) -> int:
    """streetlens worker: claims cases from the case store (the default), or a Celery worker
    on the configured broker (task_queue = celery)."""
    from vision import threads

    settings = _settings(args)
    threads.share(args.concurrency)  # N processes split the cores, not N x cores threads
    if settings.task_queue == "store":
        from pipeline.storequeue import main

        return main(args.concurrency)
    os.execv(sys.executable, _worker_cmd(args.concurrency))
    return 0  # pragma: no cover


def cmd_serve(args: argparse.Namespace) -> int:
    """streetlens serve: the HTTP API, plus a worker on the embedded broker."""
    from pipeline import httpserve

    settings = _settings(args)
    settings.home.mkdir(parents=True, exist_ok=True)
    worker = None
    if not args.no_worker:
        env = dict(os.environ, STREETLENS_HOME=str(settings.home), STREETLENS_CITY=settings.city)
        # Niced: on a shared box uploads (short, someone waits) go first and the worker drains
        # the queue with the CPU they leave (docs/operations.md).
        nice = args.worker_nice
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"], env=env,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )  # fmt: skip
    try:
        # Each API process builds its app (and its sweeper) from the environment; naming the
        # app by import string also keeps this package free of any import of `api`.
        os.environ.update(STREETLENS_HOME=str(settings.home), STREETLENS_CITY=settings.city)
        # Several processes share the port fairly (pipeline/httpserve.py), not uvicorn's way.
        status = httpserve.serve(
            "api.app:create_app", factory=True, host=args.host, port=args.port,
            workers=args.workers, log_level="info",
            # A log line per upload costs more CPU than the upload's database work; uvicorn
            # picks uvloop and httptools by itself when they are installed.
            access_log=args.access_log,
            # Open event streams (api/events.py) would otherwise hold a shutdown for minutes.
            timeout_graceful_shutdown=10,
        )  # fmt: skip
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
    return status


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """streetlens db upgrade: apply the case store's migrations."""
    from pipeline.db import current_revision, migrate

    settings = _settings(args)
    migrate(settings.database_url)
    print(f"case store at revision {current_revision(settings.database_url)}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """streetlens sweep: enqueue cases stuck in received/processing once, now."""
    from pipeline.context import Context
    from pipeline.sweeper import sweep

    n = sweep(Context(_settings(args)))
    print(f"re-enqueued {n} stuck case(s)")
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    """streetlens notify: one notification round now (workers run one every second)."""
    from pipeline.context import Context
    from pipeline.notify import run_once
    from pipeline.senders import make_sender

    ctx = Context(_settings(args))
    done = run_once(ctx.store, ctx.settings, make_sender(ctx.settings))
    print(
        f"{done['events']} event(s) fanned out, {done['delivered']} webhook(s) delivered, "
        f"{done['sent']} message(s) sent"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="streetlens", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("process", help="photos in, enriched GeoJSON Features out")
    pr.add_argument("photos", nargs="+", type=Path)
    pr.add_argument("--city", help="city pack slug (default: cambridge-ma)")
    pr.add_argument("--lat", type=float)
    pr.add_argument("--lon", type=float)
    pr.add_argument("--heading", type=float, help="camera compass heading, degrees")
    pr.add_argument("--category", help="service code the reporter chose")
    pr.add_argument("-o", "--output", type=Path, help="write a FeatureCollection here")
    pr.set_defaults(func=cmd_process)

    d = sub.add_parser("demo", help="process the demo city's sample photos")
    d.add_argument("--city")
    d.add_argument("--per-source", type=int, default=4)
    d.add_argument("-o", "--output", type=Path)
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("serve", help="HTTP API and a worker")
    s.add_argument("--city")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--no-worker", action="store_true", help="run workers elsewhere")
    s.add_argument("--workers", type=int, default=1, help="API processes (one per core)")
    s.add_argument("--worker-nice", type=int, default=10, help="niceness of the worker (0: off)")
    s.add_argument("--access-log", action="store_true", help="log every request")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="a worker: claims cases from the store, or Celery's")
    w.add_argument("--city")
    w.add_argument("--concurrency", type=int, default=1)
    w.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="the case store")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="apply migrations (the store also does on open)")
    up.set_defaults(func=cmd_db_upgrade)

    sw = sub.add_parser("sweep", help="re-enqueue stuck cases once (serve does it periodically)")
    sw.set_defaults(func=cmd_sweep)

    nt = sub.add_parser("notify", help="fan out status changes and send due webhooks/messages")
    nt.set_defaults(func=cmd_notify)

    from pipeline.city_cli import add_city_commands
    from pipeline.train_cli import add_train_commands

    add_train_commands(sub)
    add_city_commands(sub)
    from pipeline.accounts_cli import add_account_commands

    add_account_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streetlens` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (StreetLensError, VisionError) as exc:  # a bad dataset folder, model file, ...
        print(f"streetlens: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
