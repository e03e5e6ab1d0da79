"""The browser explorer: its endpoints, its refusals, and the page in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from vae.runs import load_run
from vae.serve import MAX_BATCH, Explorer, make_handler

from conftest import run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tiny_run):
    from vae.build import build_data

    loaded = load_run(tiny_run)
    test = build_data(loaded.checkpoint["config"]).test
    explorer = Explorer(loaded.model, test.images, test.labels, class_names=[str(c) for c in range(10)], points=64)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(explorer))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", loaded.model
    httpd.shutdown()
    httpd.server_close()


def request(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=body, method="POST" if body is not None else "GET"), timeout=10
        ) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_decode_returns_the_models_image_for_the_same_z(server):
    url, model = server
    z = [[0.3, -1.2], [2.0, 0.5]]
    status, body = request(f"{url}/api/decode", json.dumps({"z": z}).encode())
    assert status == 200
    images = json.loads(body)["images"]
    with torch.no_grad():
        expected = (torch.sigmoid(model.decode(torch.tensor(z))) * 255).round().to(torch.uint8)
    for data_url, image in zip(images, expected, strict=True):
        decoded = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
        assert torch.equal(torch.from_numpy(np.array(decoded)), image[0])


@pytest.mark.parametrize(
    "body,message",
    [
        (b"not json", "not JSON"),
        (json.dumps({"z": [[0.1]]}).encode(), "list of 2 numbers"),
        (json.dumps({"z": [["a", "b"]]}).encode(), "finite numbers"),
        (json.dumps({"z": [[1e9, 0]]}).encode(), "finite numbers"),
        (json.dumps({"z": [[0, 0]] * (MAX_BATCH + 1)}).encode(), f"at most {MAX_BATCH}"),
        (json.dumps([1, 2]).encode(), "expected a JSON object"),
    ],
)
def test_malformed_decode_requests_get_400_and_a_message(server, body, message):
    url, _ = server
    status, response = request(f"{url}/api/decode", body)
    assert status == 400 and message in json.loads(response)["error"]
    assert request(f"{url}/api/info")[0] == 200  # and the server lives on


def test_serves_nothing_outside_its_page(server):
    url, _ = server
    for path in (
        "/../../etc/passwd",
        "/static/../serve.py",
        "/static/nope.js",
        "/api/test_image/99999.png",
        "/conftest.py",
    ):
        assert request(url + path)[0] == 404, path
    assert request(url + "/")[0] == 200 and request(url + "/static/app.js")[0] == 200


def test_info_describes_the_plane_and_attribute_vectors(server):
    url, _ = server
    info = json.loads(request(f"{url}/api/info")[1])
    assert info["latent_dim"] == 2 and sorted(info["dims_by_kl"]) == [0, 1]
    assert len(info["points"]["u"]) == len(info["test_mu"]) == 64
    assert "thick strokes vs thin" in info["attributes"]


@pytest.mark.slow  # runs the CLI in a subprocess
def test_serve_without_a_checkpoint_does_not_start(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    result = run_cli("vae.serve", f"run={tmp_path}")
    assert result.returncode != 0
    assert "no usable checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # runs the CLI in a subprocess
def test_page_redraws_the_image_as_the_pointer_moves_in_headless_chromium(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    url, _ = server
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('decoded')", timeout=20000)
        first = page.get_attribute("#decoded", "src")
        box = page.locator("#plane").bounding_box()
        page.mouse.move(box["x"] + 0.1 * box["width"], box["y"] + 0.1 * box["height"])
        page.wait_for_function(f"document.getElementById('decoded').src !== {json.dumps(first)}", timeout=20000)
        second = page.get_attribute("#decoded", "src")
        page.mouse.move(box["x"] + 0.9 * box["width"], box["y"] + 0.85 * box["height"])
        page.wait_for_function(f"document.getElementById('decoded').src !== {json.dumps(second)}", timeout=20000)
        assert len({first, second, page.get_attribute("#decoded", "src")}) == 3
        page.screenshot(path=str(tmp_path / "page.png"))
        browser.close()
