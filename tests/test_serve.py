"""The browser explorer: its endpoints, its refusals, and the page in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from vae.runs import load_run
from vae.serve import MAX_BATCH, MAX_BODY_BYTES, REQUEST_TIMEOUT_S, Explorer, make_server, validation_attributes

from conftest import run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def explorer(tiny_run):
    from vae.build import build_data

    loaded = load_run(tiny_run)
    splits = build_data(loaded.checkpoint["config"])
    test = splits.test
    return Explorer(
        loaded.model,
        test.images,
        test.labels,
        class_names=splits.class_names,
        points=64,
        attributes=validation_attributes(splits),
    )


def serving(explorer, **options):
    """The explorer's server on 127.0.0.1 and a free port, serving from a daemon thread."""
    httpd = make_server(explorer, "127.0.0.1", 0, **options)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def server(explorer):
    httpd = serving(explorer)
    yield f"http://127.0.0.1:{httpd.server_address[1]}", explorer.model
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
    # a 2-D latent is shown as the run's PNGs show it, whatever the KL order: z[0] across, z[1] up
    assert info["plane"]["names"] == ["z[0]", "z[1]"] and info["plane"]["axes"] == [[1.0, 0.0], [0.0, 1.0]]
    assert info["points"]["u"] == [mu[0] for mu in info["test_mu"]] and info["points"]["v"] == [
        mu[1] for mu in info["test_mu"]
    ]
    assert len(info["points"]["u"]) == len(info["test_mu"]) == 64
    assert "thick strokes vs thin" in info["attributes"]
    assert list(info["attributes"]) == [f"class {name} vs rest" for name in info["class_names"]] + [
        "thick strokes vs thin"
    ]
    assert info["attribute_split"] == "validation" and info["attribute_images"] == 64  # TINY's num_val


def test_attribute_vectors_come_from_the_validation_split(tiny_run, explorer):
    from vae.build import build_data
    from vae.latent import encode_images, thick_strokes

    val = build_data(load_run(tiny_run).checkpoint["config"]).val
    mu = encode_images(explorer.model, val.images).mean
    for name, has in [("class ring 3 vs rest", val.labels == 3), ("thick strokes vs thin", thick_strokes(val.images))]:
        expected = mu[has].mean(0) - mu[~has].mean(0)
        assert torch.allclose(torch.tensor(explorer.info["attributes"][name]), expected, atol=1e-6), name


def exchange(url: str, data: bytes, *, half_close: bool = True, timeout: float = 15.0):
    """Send these bytes as they are on a fresh connection and read to its end.

    The answer's status (None: closed without one), headers (lower-case names), body, and seconds taken.
    """
    port = int(url.rsplit(":", 1)[1])
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(1 << 16):
            received += chunk
    elapsed = time.monotonic() - start
    if not received:
        return None, {}, b"", elapsed
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("iso-8859-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body, elapsed


def post(body: bytes, *, length: bytes | None = None, extra: bytes = b"") -> bytes:
    """A raw POST /api/decode with this body; Content-Length its length unless given (b"" leaves it out)."""
    length = str(len(body)).encode() if length is None else length
    headers = b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n" + extra
    if length:
        headers += b"Content-Length: " + length + b"\r\n"
    return b"POST /api/decode HTTP/1.1\r\n" + headers + b"\r\n" + body


GOOD = json.dumps({"z": [[0.25, -0.5]]}).encode()


def assert_refused(answer, status: int, message: str) -> None:
    code, headers, body, _ = answer
    assert code == status, (code, body[:300])
    assert headers["content-type"] == "application/json", headers
    assert message in json.loads(body)["error"], body[:300]


def assert_still_serves(url: str) -> None:
    status, body = request(f"{url}/api/decode", GOOD)
    assert status == 200 and len(json.loads(body)["images"]) == 1


def test_body_with_invalid_utf8_after_valid_json_gets_400(server):
    url, _ = server
    for body in (GOOD + b" \xff\xfe", b'{"z": [["\xc3"]]}', b"\xef\xbb\xbf" + GOOD):
        expected = "not JSON" if body.startswith(b"\xef") else "not UTF-8"  # a BOM is UTF-8, but not JSON
        assert_refused(exchange(url, post(body)), 400, expected)
    assert_still_serves(url)


@pytest.mark.parametrize(
    "number",
    ["1" * 400, "-" + "9" * 400, "1" * 5000, "0." + "1" * 400, "1" * 40 + "e-30"],
    ids=["400-digit int", "negative", "5000-digit int (over int's conversion limit)", "400-digit float", "exponent"],
)
def test_numbers_too_long_to_convert_get_400(server, number):
    url, _ = server
    body = b'{"z": [[' + number.encode() + b", 0]]}"
    assert_refused(exchange(url, post(body)), 400, f"a number of {len(number)} characters")
    assert_still_serves(url)


def test_a_huge_python_int_is_refused_by_range_not_by_an_overflow():
    from vae.serve import BadRequest, parse_latents

    for value in (10**400, -(10**400), float("nan"), float("inf")):
        with pytest.raises(BadRequest, match="finite numbers"):
            parse_latents({"z": [[value, 0]]}, 2)


@pytest.mark.parametrize("depth", [5000, 200_000])
def test_json_nested_too_deep_gets_400(server, depth):
    url, _ = server
    assert_refused(exchange(url, post(b'{"z": ' + b"[" * depth + b"]" * depth + b"}")), 400, "nested too deeply")
    body = b'{"z": ' + b"[" * 500 + b"]" * 500 + b"}"  # deep enough to hurt a repr, parsed fine: refused by shape
    assert_refused(exchange(url, post(body)), 400, "list of 2 numbers (got a list of 1)")
    assert_still_serves(url)


@pytest.mark.parametrize(
    "index",
    [b"9" * 5000, b"\xb2", b"\xc2\xb2", b"%C2%B2", "\uff11".encode(), b"-1", b"+1", b"1e3", b"", b"0x1", b"64"],
    ids=["5000 nines", "latin-1 superscript two", "utf-8 superscript two", "percent-encoded", "full-width one"]
    + ["-1", "+1", "1e3", "empty", "hex", "one past the end"],
)
def test_test_image_paths_that_are_no_index_get_404_json(server, index):
    url, _ = server
    answer = exchange(url, b"GET /api/test_image/" + index + b".png HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert_refused(answer, 404, "no test image")
    assert "there are 64" in json.loads(answer[2])["error"]
    status, _, body, _ = exchange(url, b"GET /api/test_image/63.png HTTP/1.0\r\n\r\n")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (28, 28)


@pytest.mark.parametrize(
    "length,status,message",
    [
        (b"", 411, "needs a Content-Length"),
        (b"-1", 400, "ASCII digits"),
        (b"abc", 400, "ASCII digits"),
        (b"\xb2", 400, "ASCII digits"),  # int() reads "²" as 2
        (b"+19", 400, "ASCII digits"),
        (b"1_9", 400, "ASCII digits"),
        (b"9" * 40, 400, "ASCII digits"),
        (b"0", 400, "body is empty"),
        (str(MAX_BODY_BYTES + 1).encode(), 413, "over the limit"),
    ],
)
def test_bad_content_lengths_get_json_4xx(server, length, status, message):
    url, _ = server
    # The whole body is sent (over the limit for 413): refused unread, it must not reset the connection under the answer.
    body = GOOD + b" " * (MAX_BODY_BYTES + 1 if status == 413 else 300_000)
    assert_refused(exchange(url, post(body, length=length)), status, message)
    assert_still_serves(url)


def test_conflicting_lengths_chunked_bodies_and_short_bodies_get_json_4xx(server):
    url, _ = server
    twice = post(GOOD, extra=b"Content-Length: 3\r\n")
    assert_refused(exchange(url, twice), 400, "conflicting Content-Length")
    chunked = post(b"19\r\n" + GOOD + b"\r\n0\r\n\r\n", length=b"", extra=b"Transfer-Encoding: chunked\r\n")
    assert_refused(exchange(url, chunked), 411, "Transfer-Encoding is not accepted")
    assert_refused(exchange(url, post(GOOD[:5], length=b"100")), 400, "ended after 5 of the 100 bytes")
    assert_still_serves(url)


def test_a_body_shorter_than_its_content_length_times_out_with_408(explorer):
    assert REQUEST_TIMEOUT_S <= 10
    httpd = serving(explorer, timeout=0.5)
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        answer = exchange(url, post(GOOD[:10], length=b"100"), half_close=False)
        assert_refused(answer, 408, "10 of the 100 bytes")
        assert 0.4 < answer[3] < 10
        # Headers that never end: answered (408) or closed, within seconds; an idle connection is closed.
        status, _, body, elapsed = exchange(url, b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\n", half_close=False)
        assert (status is None or (status == 408 and "error" in json.loads(body))) and elapsed < 10
        assert exchange(url, b"", half_close=False)[0] is None
        assert_still_serves(url)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("method", [b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"BREW"])
def test_other_methods_get_json_405_with_allow(server, method):
    url, _ = server
    answer = exchange(url, method + b" /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 25\r\n\r\n" + GOOD)
    assert_refused(answer, 405, "is not allowed")
    assert answer[1]["allow"] == "GET, HEAD, POST"
    assert_still_serves(url)


def test_a_route_asked_with_the_wrong_method_gets_405_and_head_works(server):
    url, _ = server
    answer = exchange(url, b"GET /api/decode HTTP/1.0\r\n\r\n")
    assert_refused(answer, 405, "takes a POST")
    assert answer[1]["allow"] == "POST"
    answer = exchange(url, b"POST /api/info HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
    assert_refused(answer, 405, "takes a GET")
    assert answer[1]["allow"] == "GET, HEAD"
    status, headers, body, _ = exchange(url, b"HEAD /api/info HTTP/1.0\r\n\r\n")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


@pytest.mark.parametrize(
    "data,status,message",
    [
        (b"\r\n", 400, "empty request line"),
        (b"HELLO\r\n\r\n", 400, "Bad request syntax"),
        (b"GET / HTTP/x.y\r\n\r\n", 400, "Bad request version"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "over 65536 bytes"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431, "Line too long"),
        (b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 120 + b"\r\n", 431, "Too many headers"),
    ],
    ids=["blank", "one word", "bad version", "long request line", "long header", "many headers"],
)
def test_malformed_request_lines_and_headers_get_json_4xx(server, data, status, message):
    url, _ = server
    assert_refused(exchange(url, data), status, message)
    assert_still_serves(url)


def test_a_failure_of_its_own_is_a_json_500_and_one_log_line(server, explorer, monkeypatch, capsys):
    url, _ = server

    def broken(z):
        raise RuntimeError("decoder on fire")

    monkeypatch.setattr(explorer, "decode", broken)
    assert_refused(exchange(url, post(GOOD)), 500, "internal error: RuntimeError")
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "500 for POST /api/decode: RuntimeError: decoder on fire" in err
    monkeypatch.undo()
    assert_still_serves(url)


def test_fifty_concurrent_decodes_are_all_answered(server, explorer):
    url, model = server
    count = 50
    zs = torch.linspace(-2, 2, count * 2).reshape(count, 2)
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def one(i: int) -> None:
        barrier.wait(timeout=30)
        results[i] = request(f"{url}/api/decode", json.dumps({"z": [zs[i].tolist()]}).encode())

    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert time.monotonic() - start < 60
    assert [status for status, _ in results] == [200] * count
    with torch.no_grad():
        # one z per request, as the server decodes it (a batch of 50 may round a pixel the other way)
        expected = [(torch.sigmoid(model.decode(z[None])) * 255).round().to(torch.uint8)[0] for z in zs[:count]]
    for (_, body), image in zip(results, expected, strict=True):
        (data_url,) = json.loads(body)["images"]
        decoded = np.array(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))
        assert decoded.shape == (28, 28) and torch.equal(torch.from_numpy(decoded), image[0])


def test_the_server_holds_a_burst_in_its_backlog(explorer):
    httpd = make_server(explorer)
    try:
        assert httpd.request_queue_size >= 128 and httpd.daemon_threads
        assert httpd.server_address[0] == "127.0.0.1"
    finally:
        httpd.server_close()


@pytest.mark.slow  # runs the CLI in a subprocess
def test_serve_without_a_checkpoint_does_not_start(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    result = run_cli("vae.serve", f"run={tmp_path}")
    assert result.returncode != 0
    assert "no usable checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def launch_chromium(p):
    """Debian's headless Chromium through playwright, with what it would fetch on its own switched off."""
    return p.chromium.launch(
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


def chromium_or_skip():
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    return playwright


@pytest.mark.slow  # runs a browser in a subprocess
def test_page_redraws_the_image_as_the_pointer_moves_in_headless_chromium(server, tmp_path):
    playwright = chromium_or_skip()
    url, _ = server
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
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


@pytest.mark.slow  # runs a browser in a subprocess
def test_sliders_and_marker_follow_interpolation_and_attribute_editing_in_headless_chromium(server):
    playwright = chromium_or_skip()
    url, _ = server
    info = json.loads(request(f"{url}/api/info")[1])
    mu, order = np.array(info["test_mu"]), info["dims_by_kl"]
    axes = np.array(info["plane"]["axes"])

    def set_input(page, selector: str, value) -> None:
        page.eval_on_selector(
            selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", str(value)
        )

    def shown(page) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the sliders' numbers say (by dim), where their knobs are, and the plane marker's (u, v)."""
        numbers, knobs = np.zeros(len(order)), np.zeros(len(order))
        for dim, value, text in page.eval_on_selector_all(
            "#sliders input",
            "els => els.map(e => [Number(e.dataset.dim), Number(e.value), e.nextElementSibling.textContent])",
        ):
            knobs[dim], numbers[dim] = value, float(text)
        return numbers, knobs, np.array(json.loads(page.get_attribute("#plane", "data-marker")))

    def assert_shows(page, z: np.ndarray) -> None:
        numbers, knobs, marker = shown(page)
        assert np.allclose(numbers, z, atol=0.006), (numbers, z)
        assert np.allclose(knobs, np.clip(z, -3, 3), atol=0.006), (knobs, z)
        assert np.allclose(marker, axes @ z, atol=1e-6), (marker, axes @ z)

    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('decoded')", timeout=20000)
        assert_shows(page, np.zeros(len(order)))
        set_input(page, "#interp-a", 2)
        set_input(page, "#interp-b", 5)
        set_input(page, "#interp-t", 0.3)
        assert_shows(page, 0.7 * mu[2] + 0.3 * mu[5])
        name = "thick strokes vs thin"
        set_input(page, "#edit-image", 7)
        set_input(page, "#edit-vector", name)
        set_input(page, "#edit-k", 2.5)
        edited = mu[7] + 2.5 * np.array(info["attributes"][name])
        assert_shows(page, edited)
        # and the image of mu + k s arrives, a new one for each position of the k slider
        for k in (2.5, -1.5):
            set_input(page, "#edit-k", k)
            z = mu[7] + k * np.array(info["attributes"][name])
            status, body = request(f"{url}/api/decode", json.dumps({"z": [z.tolist()]}).encode())
            (expected,) = json.loads(body)["images"]
            page.wait_for_function(f"document.getElementById('decoded').src === {json.dumps(expected)}", timeout=20000)
        set_input(page, "#edit-k", 2.5)
        # One slider moved: that dim changes, the others keep the edited z.
        set_input(page, f"#sliders input[data-dim='{order[0]}']", 1.25)
        edited[order[0]] = 1.25
        assert_shows(page, edited)
        page.wait_for_function("document.getElementById('z').textContent.includes('1.25')", timeout=20000)
        browser.close()


def test_a_client_trickling_its_headers_gets_408_within_one_deadline(explorer):
    """The deadline is the whole request's, not each read's: a byte every 0.2 s never resets it."""
    httpd = serving(explorer, timeout=1.0)
    port = httpd.server_address[1]
    try:
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            request_bytes = b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
            import select

            answer, elapsed = b"", None
            for byte in request_bytes:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:  # the server answered and closed while we were still sending
                    pass
                if select.select([sock], [], [], 0.2)[0]:  # the answer came: when
                    elapsed = time.monotonic() - start
                    break
            while chunk := sock.recv(1 << 16):
                answer += chunk
        assert elapsed is not None, "never answered"
        assert answer.split(b" ", 2)[1] == b"408" and b"within 1 s" in answer and elapsed < 3
        assert_still_serves(f"http://127.0.0.1:{port}")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_slow_clients_past_the_pool_get_503_at_once_and_do_not_grow_the_threads(explorer):
    httpd = serving(explorer, timeout=3.0, max_connections=8)
    port = httpd.server_address[1]
    before = threading.active_count()
    sockets = []
    try:
        for _ in range(40):  # slow clients: a request line, then nothing
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /api/info HTTP/1.1\r\n")
            sockets.append(sock)
        time.sleep(0.5)
        assert threading.active_count() - before <= 8 + 1  # one thread per served connection, and the deadlines' one
        refused = 0
        for sock in sockets:
            sock.settimeout(0.2)
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                continue
            if data.startswith(b"HTTP/1.1 503"):
                assert b"Retry-After: 1" in data and b'"error"' in data
                refused += 1
        assert refused == 40 - 8
    finally:
        for sock in sockets:
            sock.close()
        time.sleep(0.2)
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("host", [b"evil.example", b"evil.example:8000", b"127.0.0.2", b"localhost:1"])
def test_a_request_naming_another_host_gets_421(server, host):
    url, _ = server
    answer = exchange(url, b"GET /api/info HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert_refused(answer, 421, "is not this server's")
    port = url.rsplit(":", 1)[1].encode()
    for good in (b"127.0.0.1:" + port, b"localhost:" + port, b"LOCALHOST"):
        assert exchange(url, b"GET /api/info HTTP/1.1\r\nHost: " + good + b"\r\n\r\n")[0] == 200
