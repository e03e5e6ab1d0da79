"""Decode latency of `vae.serve` as the page sees it, and a screenshot of the page.

    python experiments/serve/measure.py outputs/runs/<run> --data-root <MNIST dir> [--requests 300]
        [--concurrent 50 --bursts 5] [--json latency.json] [--no-screenshot]

Starts the explorer's server in-process on a free port (vae.serve.make_server, as
`python -m vae.serve` does), times POST /api/decode round trips for one z (what a pointer
move sends), one after another; with --concurrent N, also N such requests sent at once from
N threads, --bursts times, and how many were answered. Where Debian's chromium and playwright
are installed (and not --no-screenshot), it moves the pointer over the plane in headless
Chromium and saves explorer.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import torch

from vae.serve import ServeArgs, build_explorer, make_server


def percentile(sorted_ms: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of sorted values."""
    return sorted_ms[max(0, min(len(sorted_ms) - 1, round(q / 100 * len(sorted_ms)) - 1))]


def cpu_model() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def burst(url: str, bodies: list[bytes]) -> tuple[list[float], list[str]]:
    """POST every body to /api/decode at once, one thread each: the answered round trips (ms), and what failed."""
    barrier = threading.Barrier(len(bodies))
    latencies, failures, lock = [], [], threading.Lock()

    def one(body: bytes) -> None:
        barrier.wait()
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/api/decode", data=body), timeout=30) as response:
                response.read()
            elapsed_ms = (time.perf_counter() - start) * 1000
        except Exception as error:  # noqa: BLE001 - a refused or reset connection is what is being counted
            with lock:
                failures.append(type(error).__name__)
            return
        with lock:
            latencies.append(elapsed_ms)

    threads = [threading.Thread(target=one, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrent", type=int, default=0, help="requests sent at once in each burst (0: none)")
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("experiments/serve"))
    parser.add_argument("--json", default="latency.json", help="file name under --out for the numbers")
    parser.add_argument("--no-screenshot", action="store_true")
    parser.add_argument(
        "--backlog", type=int, default=None, help="listen backlog (default vae.serve's; 5 is http.server's)"
    )
    args = parser.parse_args()
    explorer = build_explorer(ServeArgs(run=args.run, data_root=args.data_root, points=2000))
    server = make_server(explorer)
    if args.backlog is not None:  # listen() again: a backlog set on a listening socket applies to later connections
        server.socket.listen(args.backlog)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    generator = torch.Generator().manual_seed(0)
    latencies, decode_only = [], []
    for _ in range(args.requests):
        z = (torch.randn(1, explorer.latent_dim, generator=generator) * 1.5).tolist()
        body = json.dumps({"z": z}).encode()
        start = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(f"{url}/api/decode", data=body), timeout=10) as response:
            response.read()
        latencies.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        explorer.decode(torch.tensor(z))
        decode_only.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    result = {
        "requests": args.requests,
        "round_trip_ms_median": statistics.median(latencies),
        "round_trip_ms_p95": latencies[int(0.95 * len(latencies)) - 1],
        "decode_and_png_ms_median": statistics.median(decode_only),
        "threads": torch.get_num_threads(),
        "backlog": args.backlog or server.request_queue_size,
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)),
    }
    if args.concurrent:
        answered, failures, walls = [], [], []
        for _ in range(args.bursts):
            bodies = [
                json.dumps({"z": (torch.randn(1, explorer.latent_dim, generator=generator) * 1.5).tolist()}).encode()
                for _ in range(args.concurrent)
            ]
            start = time.perf_counter()
            latencies_ms, failed = burst(url, bodies)
            walls.append((time.perf_counter() - start) * 1000)
            answered += latencies_ms
            failures += failed
        answered.sort()
        result["concurrent"] = {
            "requests_at_once": args.concurrent,
            "bursts": args.bursts,
            "answered": len(answered),
            "failed": len(failures),
            "failures": sorted(set(failures)),
            "round_trip_ms": ({f"p{q}": percentile(answered, q) for q in (50, 90, 95, 99)} | {"max": answered[-1]})
            if answered
            else None,
            "burst_wall_ms_median": statistics.median(walls),
        }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / args.json).write_text(json.dumps(result, indent=2) + "\n")

    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium and sync_playwright and not args.no_screenshot:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 820})
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('decoded')", timeout=30000)
            box = page.locator("#plane").bounding_box()
            page.mouse.move(box["x"] + 0.62 * box["width"], box["y"] + 0.4 * box["height"])
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.out / "explorer.png"))
            browser.close()
        print(f"wrote {args.out / 'explorer.png'}")
    server.shutdown()


if __name__ == "__main__":
    main()
