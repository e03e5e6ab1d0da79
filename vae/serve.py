"""`python -m vae.serve run=<run dir> [port=8000]`: a latent-space explorer in the browser, on 127.0.0.1.

The page (vae/static/) draws the test set's mu on a plane and asks this server to decode any z
as the pointer moves. Decoding on the server keeps the page free of a model runtime: one
28x28 decode and its PNG take a few milliseconds here, under a frame (see experiments/serve/README.md).
Images are PNGs of the run's shape: gray (C = 1) or RGB (C = 3), 28x28, 64x64 or any other size.

Attribute vectors (the lecture's mu + k s): s = mean mu of the validation images with an attribute
minus mean mu of those without, the validation split encoded once at start-up, by the rule of
`vae.latent.attribute_source` (validation is the test split only under the lecture's protocol):
every attribute of a data set with named attributes (CelebA's 40, e.g. "Smiling") that both kinds
of image have; otherwise each class against the rest, and thick strokes against thin.

Endpoints: `/` and `/static/<file>` (the page), `GET /api/info` (latent plane, scatter,
attribute vectors and the split they come from, test-image latents), `POST /api/decode` with
`{"z": [[...], ...]}` (PNG images as data URLs), `GET /api/test_image/<i>.png`. HEAD works
wherever GET does.

Every refusal is JSON, `{"error": "<what is wrong>"}`, with a 4xx status: 404 for a path it
does not serve, 405 (with an Allow header) for another method, 400 for a malformed request
line, Content-Length or body, 411 without a Content-Length, 413 for a body over
MAX_BODY_BYTES, 408 when a request is not in within REQUEST_TIMEOUT_S. A failure of the
server's own is a JSON 500 and one line on stderr. The request line and headers share one deadline
(REQUEST_TIMEOUT_S, kept by one watchdog thread for all connections), so a client that trickles its
headers is answered 408 by then; a Host header that does not name this server on the loopback is
refused 421 (a page of another site reaching it through DNS rebinding). One thread per connection, at
most MAX_CONNECTIONS at once (the excess answered 503 with Retry-After at once), a listen backlog of
REQUEST_QUEUE_SIZE; the server keeps answering whatever one request did.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING

import torch
from PIL import Image

from vae.cli import MISSING, check, load_run_or_exit, parse_args
from vae.likelihoods import likelihood_of

if TYPE_CHECKING:
    from vae.latent import AttributeSource

MAX_BATCH = 64  # z per decode request
MAX_BODY_BYTES = 1 << 20
MAX_ABS_Z = 1e3
MAX_NUMBER_CHARS = 32  # a JSON number longer than this is refused before Python converts it
REQUEST_TIMEOUT_S = 5.0  # per request: its line, headers and body must be in by then
REQUEST_QUEUE_SIZE = 128  # the listen backlog (the standard library's 5 resets connections under a burst)
MAX_CONNECTIONS = 64  # connections handled at once (one thread each); the excess gets 503 with Retry-After at once
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")  # the Host a request may name (else 421: DNS rebinding)
LINGER_S = 1.0  # after refusing a body unread: how long to read what the client still sends
LINGER_BYTES = 4 * MAX_BODY_BYTES
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
GET_PATHS = ("/", "/index.html", "/api/info")  # and /static/<file>, /api/test_image/<i>.png
ALLOW_GET = "GET, HEAD"
ALLOW_POST = "POST"
IMAGE_INDEX = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() accepts "²", int() does not
CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")


class BadRequest(ValueError):
    """A request the server refuses with this message and a 4xx status (400 unless told)."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST, allow: str | None = None):
        super().__init__(message)
        self.status = HTTPStatus(status)
        self.allow = allow


@dataclass
class ServeArgs:
    """python -m vae.serve run=<run dir> [port=8000] [points=2000] [data_root=<dir>]"""

    run: str = MISSING
    port: int = 8000
    host: str = "127.0.0.1"
    checkpoint: str = "best"
    points: int = 2000  # test images shown on the plane
    data_root: str | None = None


def png_bytes(image: torch.Tensor) -> bytes:
    """(C, H, W) in [0, 1] to PNG bytes."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    mode = "L" if array.shape[0] == 1 else "RGB"
    pil = Image.fromarray((array[0] if array.shape[0] == 1 else array.permute(1, 2, 0)).numpy(), mode=mode)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def describe(value: object) -> str:
    """A short, safe description of a JSON value for an error message (no repr of a deep or huge value)."""
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(text: str, convert):
    if len(text) > MAX_NUMBER_CHARS:
        raise BadRequest(f"a number of {len(text)} characters in the body (at most {MAX_NUMBER_CHARS}): {text[:12]}...")
    return convert(text)


def parse_json(body: bytes) -> object:
    """The body as JSON (UTF-8, as RFC 8259 says), or BadRequest saying why not; never another exception."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"body is not UTF-8: byte {error.start} is {body[error.start]:#04x}") from None
    try:
        return json.loads(text, parse_int=lambda s: _number(s, int), parse_float=lambda s: _number(s, float))
    except json.JSONDecodeError as error:
        raise BadRequest(f"body is not JSON: {error.msg} at character {error.pos}") from None
    except RecursionError:
        raise BadRequest("body is JSON nested too deeply") from None
    except BadRequest:
        raise
    except ValueError as error:
        raise BadRequest(f"body is not usable JSON: {str(error)[:100]}") from None


def parse_latents(payload: object, latent_dim: int) -> torch.Tensor:
    """Validate a decode request's `z` into a (N, latent_dim) tensor, or raise BadRequest saying what is wrong."""
    if not isinstance(payload, dict) or "z" not in payload:
        raise BadRequest('expected a JSON object {"z": [[...], ...]}')
    rows = payload["z"]
    if not isinstance(rows, list) or not rows:
        raise BadRequest("z must be a non-empty list of latent vectors")
    if len(rows) > MAX_BATCH:
        raise BadRequest(f"at most {MAX_BATCH} latent vectors per request (got {len(rows)})")
    for row in rows:
        if not isinstance(row, list) or len(row) != latent_dim:
            raise BadRequest(f"each z must be a list of {latent_dim} numbers (got {describe(row)})")
        for value in row:
            # abs(value) <= MAX_ABS_Z is False for NaN and inf, and compares a huge int without converting it
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= MAX_ABS_Z:
                raise BadRequest(
                    f"z values must be finite numbers of magnitude at most {MAX_ABS_Z:g} (got {describe(value)})"
                )
    return torch.tensor(rows, dtype=torch.float32)


class Explorer:
    """What the page needs from one trained run: the plane, the scatter, attribute vectors, and a decoder.

    One latent: a model with several stochastic layers is shown in its top one (`model.encode`, `model.decode`).
    `attributes`: the images the attribute vectors come from and, per vector's name, which of them have it
    (`validation_attributes`: the validation split); a group without both kinds is left out; None: no vectors.
    `test_attributes`: name -> (N,) bool over the test images, to colour the plane by the picked attribute.
    """

    def __init__(
        self,
        model,
        test_images: torch.Tensor,
        test_labels: torch.Tensor,
        *,
        class_names: list[str],
        points: int,
        attributes: AttributeSource | None = None,
        test_attributes: dict[str, torch.Tensor] | None = None,
    ):
        from vae.latent import encode_images, mean_kl_per_dim

        self.model = model.eval()
        self.lock = Lock()  # one decode at a time: torch's CPU threads are shared anyway
        self.test_images = test_images[:points]
        posterior = encode_images(model, test_images)  # the top layer's, for a model with several
        mu, kl = posterior.mean, mean_kl_per_dim(posterior)
        self.latent_dim = mu.shape[1]
        order = kl.argsort(descending=True).tolist()
        # The plane: z = origin + u * axis_u + v * axis_v. Latent dim 2: the latent itself, z[0] horizontal and z[1]
        # vertical as in the run's PNGs (vae.explore's grid and scatter); more: the two top-KL dims, the first across.
        shown_dims = [0, 1] if self.latent_dim == 2 else order[:2]
        origin = torch.zeros(self.latent_dim)
        axes = torch.zeros(2, self.latent_dim)
        axes[0, shown_dims[0]] = 1.0
        if self.latent_dim > 1:
            axes[1, shown_dims[1]] = 1.0
        shown = mu[:points]
        plane = (shown - origin) @ axes.T
        vectors, counts = attribute_vectors(model, attributes)
        coloured = {
            name: has[:points].int().tolist() for name, has in (test_attributes or {}).items() if name in vectors
        }
        self.info = {
            "latent_dim": self.latent_dim,
            "image_shape": list(test_images.shape[1:]),
            "dims_by_kl": order,
            "kl_per_dim": kl.tolist(),
            "plane": {
                "origin": origin.tolist(),
                "axes": axes.tolist(),
                "names": [f"z[{shown_dims[0]}]", f"z[{shown_dims[1]}]" if self.latent_dim > 1 else "-"],
            },
            "points": {
                "u": plane[:, 0].tolist(),
                "v": plane[:, 1].tolist(),
                "label": test_labels[:points].tolist(),
                "attributes": coloured,  # name -> 0/1 per shown test image (CelebA's), to colour the plane by
            },
            "class_names": class_names,
            "test_mu": shown.tolist(),
            "attributes": {name: vector.tolist() for name, vector in vectors.items()},
            "attribute_counts": counts,  # name -> [images with it, images without], in the split below
            "attribute_split": None if attributes is None else attributes.split,
            "attribute_images": 0 if attributes is None else len(attributes.images),
            "default_attribute": "Smiling" if "Smiling" in vectors else next(iter(vectors), None),
            "max_batch": MAX_BATCH,
        }

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> list[bytes]:
        """PNG bytes (gray or RGB, the model's image shape) of the mean image of decoder(z) for each row of z."""
        device = next(self.model.parameters()).device
        with self.lock:
            images = likelihood_of(self.model).mean(self.model.decode(z.to(device)).float()).cpu()
        return [png_bytes(image) for image in images]


def attribute_vectors(
    model, attributes: AttributeSource | None
) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
    """s = mean mu(with) - mean mu(without) over `attributes.images` (encoded once) for each group with both kinds,
    and each group's [with, without] counts; nothing for None."""
    from vae.latent import attribute_vector, encode_images

    if attributes is None:
        return {}, {}
    usable = {name: has for name, (has, _) in attributes.groups.items() if has.any() and not has.all()}
    if not usable:
        return {}, {}
    mu = encode_images(model, attributes.images).mean
    vectors = {name: attribute_vector(mu, has) for name, has in usable.items()}
    counts = {name: [int(has.sum()), int((~has).sum())] for name, has in usable.items()}
    return vectors, counts


def validation_attributes(splits, *, val_source: str = "holdout") -> AttributeSource:
    """The page's attribute groups, by `vae.latent.attribute_source`'s rule (the validation split's images):
    every named attribute of the data set (CelebA's, by its name), or else each class against the rest
    ("class 3 vs rest") and thick strokes against thin."""
    from vae.latent import AttributeSource, attribute_source

    names = splits.attribute_names
    if names:
        picked = [attribute_source(splits, attribute=name, val_source=val_source) for name in names]
    else:
        picked = [
            attribute_source(splits, attribute_class=index, val_source=val_source)
            for index in range(len(splits.class_names))
        ]
    groups, last = {}, {}
    for source in picked:
        for key, (has, title) in source.groups.items():
            if names:
                groups[title] = (has, title)
            elif key == "thick_strokes":  # the same for every class: once, after the classes
                last["thick strokes vs thin"] = (has, title)
            else:
                groups[f"{title} vs rest"] = (has, title)
    return AttributeSource(picked[0].split, picked[0].images, {**groups, **last})


def log(message: str) -> None:
    """One line on the server's console."""
    print(f"vae.serve: {message}", file=sys.stderr, flush=True)


class ExplorerHandler(BaseHTTPRequestHandler):
    """The explorer's request handler: every answer JSON or a static file, never a traceback.

    `make_handler` subclasses it for one explorer (`explorer`, `request_timeout`): http.server builds one
    handler per connection from the class it is given.
    """

    explorer: Explorer
    request_timeout: float = REQUEST_TIMEOUT_S
    static = resources.files("vae") / "static"
    server_version = "vae-serve"

    def log_message(self, format, *args):  # noqa: A002 - keep the console quiet; errors still reach the client
        pass

    def setup(self) -> None:
        self.timeout = self.request_timeout  # StreamRequestHandler.setup() sets it on the socket: no read waits forever
        super().setup()

    # -- answers ---------------------------------------------------------------------------

    def send_response(self, code, message=None):
        self.responded = True
        # Always a status line and headers: http.server leaves them out for "HTTP/0.9", which is also what it
        # assumes of a request line it cannot parse. No client speaks 0.9 any more.
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        super().send_response(code, message)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _error(self, status: int, message: str, allow: str | None = None) -> None:
        self._json(status, {"error": message}, {"Allow": allow} if allow else None)

    def _deadline(self) -> None:
        """The watchdog's: the request line and headers are not in by the deadline; stop reading them (the
        blocked read returns), so the handler answers 408 however slowly the bytes were coming."""
        self.deadline_passed = True
        try:
            self.connection.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (request line, headers): JSON like every other answer, not its HTML page."""
        self.close_connection = True
        if getattr(self, "deadline_passed", False):  # what was cut off at the deadline is late, not malformed
            code, message = (
                HTTPStatus.REQUEST_TIMEOUT,
                f"request not received in full within {self.request_timeout:g} s",
            )
        status = HTTPStatus(code)
        text = message or status.phrase
        self._error(status, text if text.endswith(status.phrase) else f"{status.phrase}: {text}")

    # -- one request -----------------------------------------------------------------------

    # long: http.server's method overridden whole; its steps (read, parse, dispatch, answer) must keep its order
    def handle_one_request(self) -> None:
        """http.server's, with every failure answered: a timeout 408, a bug 500 and one log line. The request
        line and headers share one deadline (`request_timeout` from the request's first byte awaited), so a client that
        trickles its headers a byte at a time is answered 408 by then, not kept forever."""
        self.responded = False
        self.body_unread = False
        self.raw_requestline = b""
        self.requestline, self.request_version, self.command = "", "HTTP/1.0", None
        # A socket timeout bounds each read, not the request: a watchdog ends the reading at the deadline.
        self.deadline_passed = False
        watchdog = self.server.watch(self, self.request_timeout)
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                return self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "request line over 65536 bytes")
            if not self.raw_requestline:
                self.close_connection = True
                return
            if self.deadline_passed and not self.raw_requestline.endswith(b"\n"):
                raise TimeoutError  # a request line cut off at the deadline
            if not self.parse_request():
                if not self.responded:
                    self.send_error(HTTPStatus.BAD_REQUEST, "empty request line")
                return
            self.server.unwatch(watchdog)  # the body has a deadline of its own (_read_body)
            if self.deadline_passed:
                raise TimeoutError
            self._check_host()
            self.body_unread = self.command in ("POST", "PUT", "PATCH") or any(
                name in self.headers for name in ("Content-Length", "Transfer-Encoding")
            )
            handler = getattr(self, f"do_{self.command}", None)
            if handler is None:
                raise BadRequest(
                    f"method {self.command[:20]!r} is not allowed; this server answers {ALLOW_GET}, {ALLOW_POST}",
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    allow=f"{ALLOW_GET}, {ALLOW_POST}",
                )
            handler()
            self.wfile.flush()
        except BadRequest as error:
            self.close_connection = True
            self._error(error.status, str(error), error.allow)
        except TimeoutError:
            self.close_connection = True
            self.body_unread = False  # the client is not sending: nothing to wait for
            if self.raw_requestline and not self.responded:  # an idle connection is just closed
                try:
                    self._error(
                        HTTPStatus.REQUEST_TIMEOUT, f"request not received in full within {self.request_timeout:g} s"
                    )
                except OSError:
                    pass
        except OSError as error:  # the client went away (reset, broken pipe): nothing to answer
            self.close_connection = True
            self.body_unread = False
            log(f"{self.client_address[0]} {self.command} {self._where()}: {type(error).__name__}: {error}")
        except Exception as error:  # a bug of the server's own: a JSON 500 and one line, never a traceback
            self.close_connection = True
            frame = traceback.extract_tb(error.__traceback__)[-1]
            log(
                f"500 for {self.command} {self._where()}: {type(error).__name__}: {error} "
                f"({Path(frame.filename).name}:{frame.lineno})"
            )
            if not self.responded:
                try:
                    self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(error).__name__}")
                except OSError:
                    pass
        finally:
            self.server.unwatch(watchdog)
            if self.body_unread and self.responded:
                self._linger()

    def _check_host(self) -> None:
        """A Host header must name this server on the loopback (a page of another site reaching it through DNS
        rebinding names its own host): else 421. A request without one (HTTP/1.0) is let through."""
        host = self.headers.get("Host")
        if host is None:
            return
        port = self.server.server_address[1]
        allowed = {name for loopback in LOOPBACK_NAMES for name in (loopback, f"{loopback}:{port}")}
        if host.strip().lower() not in allowed:
            raise BadRequest(
                f"Host {host[:80]!r} is not this server's: it answers Host 127.0.0.1:{port} or localhost:{port}",
                HTTPStatus.MISDIRECTED_REQUEST,
            )

    def _where(self) -> str:
        path = getattr(self, "path", "") or ""
        return path if len(path) <= 80 else path[:77] + "..."

    def _linger(self) -> None:
        """Answered before reading the body: half-close, then read (a bounded amount of) what the client still
        sends, so closing with unread bytes does not reset the connection under the answer."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline, drained = time.monotonic() + LINGER_S, 0
            while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(1 << 16)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    def _read_body(self) -> bytes:
        """The request's body, all Content-Length bytes of it within the timeout, or BadRequest (400, 408, 411, 413)."""
        if "Transfer-Encoding" in self.headers:
            raise BadRequest(
                "Transfer-Encoding is not accepted: send the body with a Content-Length", HTTPStatus.LENGTH_REQUIRED
            )
        values = [value.strip() for value in self.headers.get_all("Content-Length") or []]
        if not values:
            raise BadRequest("a POST needs a Content-Length header", HTTPStatus.LENGTH_REQUIRED)
        if len(set(values)) > 1:
            raise BadRequest(f"conflicting Content-Length headers: {', '.join(v[:20] for v in values[:4])}")
        if not CONTENT_LENGTH.fullmatch(values[0]):
            raise BadRequest(f"Content-Length must be a byte count in ASCII digits (got {describe(values[0])})")
        length = int(values[0])
        if length == 0:
            raise BadRequest('the body is empty: expected JSON {"z": [[...], ...]}')
        if length > MAX_BODY_BYTES:
            raise BadRequest(
                f"a body of {length} bytes is over the limit of {MAX_BODY_BYTES}",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        deadline, chunks, received = time.monotonic() + self.request_timeout, [], 0
        while received < length:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)  # the whole body within the timeout, not each read
                chunk = self.rfile.read1(min(length - received, 1 << 16))
            except TimeoutError:
                self.body_unread = False
                raise BadRequest(
                    f"the body was not in within {self.request_timeout:g} s: {received} of the {length} bytes "
                    "its Content-Length promised",
                    HTTPStatus.REQUEST_TIMEOUT,
                ) from None
            if not chunk:
                self.body_unread = False
                raise BadRequest(f"the body ended after {received} of the {length} bytes its Content-Length promised")
            chunks.append(chunk)
            received += len(chunk)
        self.body_unread = False
        return b"".join(chunks)

    # -- the routes ------------------------------------------------------------------------

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            return self._send(200, (self.static / "index.html").read_bytes(), STATIC_FILES["index.html"])
        if path.startswith("/static/") and path.removeprefix("/static/") in STATIC_FILES:
            name = path.removeprefix("/static/")
            return self._send(200, (self.static / name).read_bytes(), STATIC_FILES[name])
        if path == "/api/info":
            return self._json(200, self.explorer.info)
        if path.startswith("/api/test_image/") and path.endswith(".png"):
            index = path.removeprefix("/api/test_image/").removesuffix(".png")
            count = len(self.explorer.test_images)
            if not IMAGE_INDEX.fullmatch(index) or int(index) >= count:
                raise BadRequest(
                    f"no test image {describe(index)}: there are {count}, 0 to {count - 1}", HTTPStatus.NOT_FOUND
                )
            image = self.explorer.test_images[int(index)].float() / 255.0
            return self._send(200, png_bytes(image), "image/png")
        if path == "/api/decode":
            raise BadRequest("/api/decode takes a POST", HTTPStatus.METHOD_NOT_ALLOWED, allow=ALLOW_POST)
        raise BadRequest(f"nothing at {self._where()}", HTTPStatus.NOT_FOUND)

    do_HEAD = do_GET  # noqa: N815 - _send leaves the body out

    def do_POST(self):  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path != "/api/decode":
            if path in GET_PATHS or path.startswith(("/static/", "/api/test_image/")):
                raise BadRequest(f"{self._where()} takes a GET", HTTPStatus.METHOD_NOT_ALLOWED, allow=ALLOW_GET)
            raise BadRequest(f"nothing at {self._where()}", HTTPStatus.NOT_FOUND)
        z = parse_latents(parse_json(self._read_body()), self.explorer.latent_dim)
        images = ["data:image/png;base64," + base64.b64encode(png).decode() for png in self.explorer.decode(z)]
        return self._json(200, {"images": images})


def make_handler(explorer: Explorer, *, timeout: float = REQUEST_TIMEOUT_S) -> type[ExplorerHandler]:
    """The request handler class for one explorer, its whole request (line, headers, body) within `timeout` s."""
    return type("Handler", (ExplorerHandler,), {"explorer": explorer, "request_timeout": timeout})


class ExplorerServer(ThreadingHTTPServer):
    """http.server's threading server with a listen backlog that holds a burst, daemon threads, at most
    MAX_CONNECTIONS connections handled at once (the excess answered 503 with Retry-After at once, never queued
    on a thread), and one log line (not a traceback) for anything that escapes a handler."""

    request_queue_size = REQUEST_QUEUE_SIZE
    daemon_threads = True
    max_connections = MAX_CONNECTIONS

    def server_activate(self) -> None:
        self.slots = threading.BoundedSemaphore(self.max_connections)
        self.deadlines: dict[int, tuple[float, object]] = {}  # watch id -> (deadline, handler)
        self.deadlines_lock = threading.Lock()
        self.watch_ids = iter(range(1 << 62))
        threading.Thread(target=self._reap, name="deadlines", daemon=True).start()  # one thread for all
        super().server_activate()

    def watch(self, handler, seconds: float) -> int:
        """Call handler._deadline() if its request line and headers are not in within `seconds`."""
        with self.deadlines_lock:
            key = next(self.watch_ids)
            self.deadlines[key] = (time.monotonic() + seconds, handler)
        return key

    def unwatch(self, key: int) -> None:
        with self.deadlines_lock:
            self.deadlines.pop(key, None)

    def _reap(self) -> None:
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            with self.deadlines_lock:
                due = [key for key, (deadline, _) in self.deadlines.items() if deadline <= now]
                handlers = [self.deadlines.pop(key)[1] for key in due]
            for handler in handlers:
                handler._deadline()

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            body = json.dumps({"error": f"busy: {self.max_connections} connections are being served; retry"}).encode()
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                    + b"Connection: close\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        log(f"{client_address[0]}: {type(error).__name__}: {error}")


def make_server(
    explorer: Explorer,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    timeout: float = REQUEST_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
) -> ExplorerServer:
    """The explorer's server, bound (port 0: a free one) but not yet serving: call serve_forever()."""
    server = ExplorerServer((host, port), make_handler(explorer, timeout=timeout), bind_and_activate=False)
    server.max_connections = max_connections
    try:
        server.server_bind()
        server.server_activate()
    except BaseException:
        server.server_close()
        raise
    return server


def build_explorer(args: ServeArgs) -> Explorer:
    """The explorer for a run: its model, its test images for the plane, and attribute vectors from its
    validation split."""
    loaded, splits = load_run_or_exit(args.run, checkpoint=args.checkpoint, data_root=args.data_root)
    test = splits.test
    attributes = validation_attributes(
        splits, val_source=loaded.checkpoint["config"]["data"].get("val_source", "holdout")
    )
    names = splits.attribute_names
    test_attributes = (
        {name: test.attributes[:, i] for i, name in enumerate(names)} if names and test.attributes is not None else None
    )
    return Explorer(
        loaded.model,
        test.images,
        test.labels,
        class_names=splits.class_names,
        points=args.points,
        attributes=attributes,
        test_attributes=test_attributes,
    )


def main(argv=None) -> None:
    args = parse_args(ServeArgs, argv, usage=ServeArgs.__doc__)
    check(0 <= args.port < 65536, "port", "a TCP port from 0 to 65535", args.port)
    check(args.points >= 1, "points", "an integer >= 1", args.points)
    run = Path(args.run)
    if not run.is_dir():
        sys.exit(f"error: run directory {run} does not exist")
    explorer = build_explorer(args)
    server = make_server(explorer, args.host, args.port)
    print(f"serving {run} at http://{args.host}:{server.server_address[1]}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
