"""`python -m vae.serve run=<run dir> [port=8000]`: a latent-space explorer in the browser, on 127.0.0.1.

The page (vae/static/) draws the test set's mu on a plane and asks this server to decode any z
as the pointer moves. Decoding on the server keeps the page free of a model runtime: one
28x28 decode takes about a millisecond here, well under a frame (see README).

Endpoints: `/` and `/static/<file>` (the page), `GET /api/info` (latent plane, scatter,
attribute vectors, test-image latents), `POST /api/decode` with `{"z": [[...], ...]}` (PNG
images as data URLs), `GET /api/test_image/<i>.png`. Anything else is 404; a malformed
request is 400 with a message.
"""

from __future__ import annotations

import base64
import io
import json
import math
import sys
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from threading import Lock

import torch
from PIL import Image

from vae.cli import MISSING, check, load_run_or_exit, parse_args

MAX_BATCH = 64  # z per decode request
MAX_BODY_BYTES = 1 << 20
MAX_ABS_Z = 1e3
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


class BadRequest(ValueError):
    """A request the server refuses with 400 and this message."""


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
            raise BadRequest(f"each z must be a list of {latent_dim} numbers (got {str(row)[:60]})")
        for value in row:
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or abs(value) > MAX_ABS_Z
            ):
                raise BadRequest(f"z values must be finite numbers of magnitude at most {MAX_ABS_Z:g} (got {value!r})")
    return torch.tensor(rows, dtype=torch.float32)


class Explorer:
    """What the page needs from one trained run: the plane, the scatter, attribute vectors, and a decoder."""

    def __init__(
        self, model, test_images: torch.Tensor, test_labels: torch.Tensor, *, class_names: list[str], points: int
    ):
        from vae.latent import attribute_vector, encode_images, mean_kl_per_dim, thick_strokes

        self.model = model.eval()
        self.lock = Lock()  # one decode at a time: torch's CPU threads are shared anyway
        self.test_images = test_images[:points]
        mu, log_var = encode_images(model, test_images)
        kl = mean_kl_per_dim(mu, log_var)
        self.latent_dim = mu.shape[1]
        order = kl.argsort(descending=True).tolist()
        # The plane: z = origin + u * axis_u + v * axis_v. Latent dim 2: the latent itself; more: the two top-KL dims.
        origin = torch.zeros(self.latent_dim)
        axes = torch.zeros(2, self.latent_dim)
        axes[0, order[0]] = 1.0
        if self.latent_dim > 1:
            axes[1, order[1]] = 1.0
        shown = mu[:points]
        plane = (shown - origin) @ axes.T
        attributes = {
            f"class {class_names[c]} vs rest": attribute_vector(mu, test_labels == c)
            for c in range(len(class_names))
            if (test_labels == c).any() and not (test_labels == c).all()
        }
        attributes["thick strokes vs thin"] = attribute_vector(mu, thick_strokes(test_images))
        self.info = {
            "latent_dim": self.latent_dim,
            "image_shape": list(test_images.shape[1:]),
            "dims_by_kl": order,
            "kl_per_dim": kl.tolist(),
            "plane": {
                "origin": origin.tolist(),
                "axes": axes.tolist(),
                "names": [f"z[{order[0]}]", f"z[{order[1]}]" if self.latent_dim > 1 else "-"],
            },
            "points": {"u": plane[:, 0].tolist(), "v": plane[:, 1].tolist(), "label": test_labels[:points].tolist()},
            "class_names": class_names,
            "test_mu": shown.tolist(),
            "attributes": {name: vector.tolist() for name, vector in attributes.items()},
            "max_batch": MAX_BATCH,
        }

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> list[bytes]:
        """PNG bytes of sigmoid(decoder(z)) for each row of z."""
        device = next(self.model.parameters()).device
        with self.lock:
            images = torch.sigmoid(self.model.decode(z.to(device)).float()).cpu()
        return [png_bytes(image) for image in images]


def make_handler(explorer: Explorer):
    static = resources.files("vae") / "static"

    class Handler(BaseHTTPRequestHandler):
        server_version = "vae-serve"

        def log_message(self, format, *args):  # noqa: A002 - keep the console quiet; errors still reach the client
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: object) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": message})

        def do_GET(self):  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                return self._send(200, (static / "index.html").read_bytes(), STATIC_FILES["index.html"])
            if path.startswith("/static/") and path.removeprefix("/static/") in STATIC_FILES:
                name = path.removeprefix("/static/")
                return self._send(200, (static / name).read_bytes(), STATIC_FILES[name])
            if path == "/api/info":
                return self._json(200, explorer.info)
            if path.startswith("/api/test_image/") and path.endswith(".png"):
                index = path.removeprefix("/api/test_image/").removesuffix(".png")
                if not index.isdigit() or int(index) >= len(explorer.test_images):
                    return self._error(HTTPStatus.NOT_FOUND, f"no test image {index!r}")
                image = explorer.test_images[int(index)].float() / 255.0
                return self._send(200, png_bytes(image), "image/png")
            return self._error(HTTPStatus.NOT_FOUND, f"nothing at {path}")

        def do_POST(self):  # noqa: N802
            if self.path.split("?", 1)[0] != "/api/decode":
                return self._error(HTTPStatus.NOT_FOUND, f"nothing at {self.path}")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            if length <= 0 or length > MAX_BODY_BYTES:
                return self._error(HTTPStatus.BAD_REQUEST, f"body must be 1 to {MAX_BODY_BYTES} bytes of JSON")
            try:
                payload = json.loads(self.rfile.read(length))
                z = parse_latents(payload, explorer.latent_dim)
            except json.JSONDecodeError as error:
                return self._error(HTTPStatus.BAD_REQUEST, f"body is not JSON: {error.msg}")
            except BadRequest as error:
                return self._error(HTTPStatus.BAD_REQUEST, str(error))
            images = ["data:image/png;base64," + base64.b64encode(png).decode() for png in explorer.decode(z)]
            return self._json(200, {"images": images})

    return Handler


def build_explorer(args: ServeArgs) -> Explorer:
    """The explorer for a run: its model, and its test images for the plane."""
    loaded, splits = load_run_or_exit(args.run, checkpoint=args.checkpoint, data_root=args.data_root)
    test = splits.test
    return Explorer(loaded.model, test.images, test.labels, class_names=splits.class_names, points=args.points)


def main(argv=None) -> None:
    args = parse_args(ServeArgs, argv, usage=ServeArgs.__doc__)
    check(0 <= args.port < 65536, "port", "a TCP port from 0 to 65535", args.port)
    check(args.points >= 1, "points", "an integer >= 1", args.points)
    run = Path(args.run)
    if not run.is_dir():
        sys.exit(f"error: run directory {run} does not exist")
    explorer = build_explorer(args)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(explorer))
    print(f"serving {run} at http://{args.host}:{server.server_address[1]}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
