"""Evidence uploads at the limits: the worst-case time of one photo, and /healthz while four
worst-case uploads run at once under gunicorn.

Part 1 stores each worst-case input of ``bench/upload_inputs.py`` (made for the app's default
byte and pixel limits) with ``evidence.store_photo``, each in a fresh process so that its peak
memory can be read, and prints the time and the peak memory of each and the worst of them.

Part 2 starts gunicorn as ``make serve`` and docs/deploy/aftersales.service do (4 workers, 4
threads each, on a SQLite instance in a temporary folder, CSRF and rate limits on), lets four
buyers post the request form at the same moment, each with ``--photos`` copies of the slowest
input of part 1, and meanwhile asks ``/healthz`` every 50 ms: it prints the slowest /healthz
answer while the uploads run against its median when idle, and checks that every upload made a
case. Run from the project root:

    .venv/bin/python bench/uploads.py                  # both parts, about a minute
    .venv/bin/python bench/uploads.py --sync-workers   # part 2 with gunicorn's sync workers
"""
from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.upload_inputs import MAKERS  # noqa: E402


def _limits() -> tuple[int, int, int]:
    from aftersales.config import defaults

    settings = defaults()
    return (settings["AFTERSALES_UPLOAD_MAX_BYTES"], settings["AFTERSALES_UPLOAD_MAX_PIXELS"],
            settings["AFTERSALES_UPLOAD_MAX_EDGE"])


# --- part 1: one photo at a time ------------------------------------------------------------
def measure_one(index: int) -> dict[str, Any]:
    """Make input ``index`` and store it once (in this process, which does nothing else)."""
    import io

    from flask import Flask
    from flask_babel import Babel

    from aftersales.evidence import EvidenceRefused, store_photo

    max_bytes, max_pixels, max_edge = _limits()
    name, data = MAKERS[index](max_bytes, max_pixels)
    app = Flask("bench")
    Babel(app)
    folder = Path(tempfile.mkdtemp(prefix="aftersales-bench-uploads-"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with app.test_request_context():
            started = time.perf_counter()
            try:
                stored = store_photo(io.BytesIO(data), name, upload_dir=folder, max_bytes=max_bytes,
                                     max_pixels=max_pixels, max_edge=max_edge)
                outcome = f"stored {stored['width']}x{stored['height']}, {stored['byte_size'] // 1024} KB"
            except EvidenceRefused as refused:
                outcome = f"refused: {refused}"
            seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"name": name, "bytes": len(data), "seconds": seconds, "outcome": outcome,
            "peak_mib_added": max(0, peak - before) / 1024}


def part_one() -> dict[str, Any]:
    max_bytes, max_pixels, max_edge = _limits()
    print(f"== part 1: one worst-case photo at a time (limits: {max_bytes // (1024 * 1024)} MB, "
          f"{max_pixels / 1e6:g} MP, stored at most {max_edge} px on the longer side)")
    print(f"   {'input':44s} {'file':>8s} {'seconds':>8s} {'memory':>9s}  outcome")
    results = []
    for index in range(len(MAKERS)):
        answer = subprocess.run([sys.executable, __file__, "--one", str(index)], capture_output=True, text=True,
                                cwd=REPO, timeout=600)
        if answer.returncode != 0:
            sys.exit(f"bench/uploads.py: input {index} failed:\n{answer.stderr}")
        result = json.loads(answer.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"   {result['name']:44s} {result['bytes'] // 1024:6d}KB {result['seconds']:8.2f} "
              f"{result['peak_mib_added']:6.0f}MiB  {result['outcome']}", flush=True)
    worst = max(results, key=lambda r: r["seconds"])
    print(f"worst_case_upload_seconds: {worst['seconds']:.2f} ({worst['name']}; target under 2 s)")
    print(f"worst_case_upload_peak_mib: {max(r['peak_mib_added'] for r in results):.0f}")
    return {"worst_index": results.index(worst), "results": results}


# --- part 2: four at once under gunicorn ------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PREP = r"""
import sys
from datetime import timedelta
from aftersales import create_app
from aftersales.extensions import db
from aftersales.models import utcnow
from aftersales.orders import LineInput, OrderInput, ensure_shop, upsert_order
app = create_app()
with app.app_context():
    db.create_all()
    ensure_shop("shop", "Bench Shop", return_address="1 Return Road")
    db.session.commit()
    delivered = utcnow() - timedelta(days=2)
    placed = delivered - timedelta(days=3)
    order = upsert_order(OrderInput(
        shop="shop", number="UP-1", buyer_email="buyer@example.com", currency="CNY",
        lines=[LineInput(i, f"Item {i}", "books", 1, 10000) for i in range(1, int(sys.argv[1]) + 1)],
        placed_at=placed, paid_at=placed, shipped_at=placed + timedelta(hours=6), delivered_at=delivered))
    print(order.id, " ".join(str(line.id) for line in order.lines))
"""


class Buyer:
    """A browser of one buyer: cookies, CSRF tokens read from the pages, multipart posts."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=120) as response:
            return response.read().decode()

    def token(self, page: str) -> str:
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def post(self, path: str, fields: dict[str, str], files: list[tuple[str, str, bytes]] = ()) -> int:
        boundary = secrets.token_hex(16)
        parts = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for name, filename, data in files:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                         f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        request = urllib.request.Request(self.base + path, data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with self.opener.open(request, timeout=300) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


def part_two(worst_index: int, photos: int, workers: int, threads: int) -> None:
    max_bytes, max_pixels, _ = _limits()
    name, data = MAKERS[worst_index](max_bytes, max_pixels)
    kind = "sync" if threads <= 1 else f"gthread, {threads} threads each"
    print(f"\n== part 2: gunicorn {workers} workers ({kind}); 4 buyers post {photos} x '{name}' at once")
    work = Path(tempfile.mkdtemp(prefix="aftersales-bench-uploads-"))
    port = _free_port()
    env = {**os.environ, "AFTERSALES_INSTANCE_PATH": str(work / "instance"),
           "AFTERSALES_SECRET_KEY": secrets.token_hex(32), "FLASK_DEBUG": "0"}
    server = None
    try:
        prep = subprocess.run([sys.executable, "-c", PREP, "4"], env=env, cwd=REPO, capture_output=True, text=True)
        if prep.returncode != 0:
            sys.exit(f"bench/uploads.py: preparing the instance failed:\n{prep.stderr}")
        order_id, *line_ids = prep.stdout.split()
        gunicorn = Path(sys.executable).with_name("gunicorn")
        if not gunicorn.exists():
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "gunicorn>=22.0"], check=True)
        command = [str(gunicorn), "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--timeout", "120",
                   "--log-level", "warning", "--error-logfile", str(work / "gunicorn.log")]
        if threads > 1:
            command += ["--threads", str(threads)]
        server = subprocess.Popen(command + ["wsgi:app"], env=env, cwd=REPO)
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        idle = [_timed_healthz(base) for _ in range(20)]

        buyers = []
        for line_id in line_ids:
            buyer = Buyer(base)
            buyer.post("/", {"csrf_token": buyer.token(buyer.get("/")), "order_number": "UP-1",
                             "email": "buyer@example.com"})
            page = buyer.get(f"/orders/{order_id}/lines/{line_id}/request?kind=refund_only")
            buyers.append((buyer, line_id, buyer.token(page)))

        statuses: list[int] = []
        seconds: list[float] = []
        start = threading.Barrier(len(buyers) + 1)

        def upload(buyer: Buyer, line_id: str, token: str) -> None:
            start.wait()
            began = time.perf_counter()
            status = buyer.post(
                f"/orders/{order_id}/lines/{line_id}/request",
                {"csrf_token": token, "kind": "refund_only", "reason": "damaged", "quantity": "1",
                 "amount": "100.00", "description": "Broken on arrival"},
                [("evidence", f"photo{n}.bin", data) for n in range(photos)],
            )
            seconds.append(time.perf_counter() - began)
            statuses.append(status)

        uploads = [threading.Thread(target=upload, args=entry) for entry in buyers]
        for thread in uploads:
            thread.start()
        start.wait()
        busy: list[float] = []
        while any(thread.is_alive() for thread in uploads):
            busy.append(_timed_healthz(base))
            time.sleep(0.05)
        for thread in uploads:
            thread.join()

        made = subprocess.run([sys.executable, "-c", (
            "from aftersales import create_app\nfrom aftersales.extensions import db\nfrom aftersales.models import Case, Evidence\n"
            "from sqlalchemy import func, select\napp = create_app()\nwith app.app_context():\n"
            "    print(db.session.scalar(select(func.count(Case.id))), db.session.scalar(select(func.count(Evidence.id))))")],
            env=env, cwd=REPO, capture_output=True, text=True).stdout.split()
        print(f"   uploads answered {sorted(statuses)} in {min(seconds):.2f}-{max(seconds):.2f} s; "
              f"cases made: {made[0]}, photos stored: {made[1]} (expected {len(buyers)} and {len(buyers) * photos})")
        print(f"   /healthz asked {len(busy)} times during the uploads")
        print(f"healthz_idle_median_ms: {statistics.median(idle) * 1000:.1f}")
        print(f"healthz_during_uploads_max_ms: {max(busy) * 1000:.1f} (target under 1000)")
        print(f"healthz_during_uploads_median_ms: {statistics.median(busy) * 1000:.1f}")
        print(f"healthz_busy_max_vs_idle_median_ratio: {max(busy) / statistics.median(idle):.1f}")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        log = work / "gunicorn.log"
        if log.exists() and re.search(r"Traceback|WORKER TIMEOUT", log.read_text()):
            print("   gunicorn log has errors:\n" + log.read_text()[-3000:])
        shutil.rmtree(work, ignore_errors=True)


def _timed_healthz(base: str) -> float:
    began = time.perf_counter()
    urllib.request.urlopen(base + "/healthz", timeout=60).read()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--photos", type=int, default=1, help="photos per upload in part 2 (default 1)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers in part 2 (default 4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker in part 2 (default 4, as deployed)")
    parser.add_argument("--sync-workers", action="store_true", help="part 2 with sync workers (--threads 1)")
    parser.add_argument("--part", choices=["1", "2", "both"], default="both", help="which part to run (default both)")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure_one(args.one)))
        return
    print(f"   nproc: {os.cpu_count()}; load average before the run: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    worst = part_one()["worst_index"] if args.part in ("1", "both") else 1
    if args.part in ("2", "both"):
        part_two(worst, args.photos, args.workers, 1 if args.sync_workers else args.threads)


if __name__ == "__main__":
    main()
