"""Decode latency of `vae.serve` as the page sees it, and a screenshot of the page.

    python experiments/serve/measure.py outputs/runs/<run> --data-root <MNIST dir> [--requests 300]

Starts the explorer's server in-process on a free port, times POST /api/decode round trips
for one z (what a pointer move sends), and, where Debian's chromium and playwright are
installed, moves the pointer over the plane in headless Chromium and saves explorer.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import threading
import time
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import torch

from vae.serve import ServeArgs, build_explorer, make_handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("experiments/serve"))
    args = parser.parse_args()
    explorer = build_explorer(ServeArgs(run=args.run, data_root=args.data_root, points=2000))
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(explorer))
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
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(result, indent=2))

    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium and sync_playwright:
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
