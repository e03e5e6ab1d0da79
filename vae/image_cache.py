"""Image files decoded once: centre-cropped, resized uint8 tensors, cached on disk between launches.

`data=folder` and `data=celeba` read JPEG or PNG files; decoding 200,000 of them takes minutes, so
the decoded (N, C, S, S) uint8 tensor is saved (`torch.save`) into the cache folder and read back by
the next launch in seconds. An entry is keyed by a digest of the resolved folder, every decoded
file's relative name, size and modification time (in order), the crop, the image size, the
channels and `FORMAT_VERSION`: a decoded file added, removed, replaced or touched misses the cache and the
folder is decoded again. An entry is written to a temporary file and renamed into place, so a kill
never leaves a partial entry under its name; a new entry for a folder replaces the older ones for
the same folder and settings. Its size is N x C x S x S bytes: 2.49 GB for CelebA's 202,599
images at 3 x 64 x 64.

The cache folder is `data.cache_dir`, else $VAE_CACHE_DIR, else $XDG_CACHE_HOME/vae, else
~/.cache/vae; `data.cache=false` decodes every launch and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from vae.progress import ensure_handler, progress

FORMAT_VERSION = 1  # raise when the decoding or the entry's layout changes: every older entry then misses
CACHE_ENV = "VAE_CACHE_DIR"
DECODE_CHUNK = 1024  # files handed to the decoding threads at a time
log = logging.getLogger("vae.image_cache")


class UnreadableImage(Exception):
    """A file that could not be decoded: `path` and `reason` (the error's type), for the caller's message."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass
class Decoded:
    images: torch.Tensor  # (N, C, S, S) uint8: the readable files, in order
    skipped: list[int]  # indexes (into the files) of those that could not be read (skip_bad only)
    reasons: list[str]  # why, one per skipped file


def cache_folder(configured: str | os.PathLike | None) -> Path:
    """Where entries live: `configured` (data.cache_dir), else $VAE_CACHE_DIR, else $XDG_CACHE_HOME/vae, else ~/.cache/vae."""
    if configured not in (None, ""):
        return Path(configured).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "vae"
    return Path.home() / ".cache" / "vae"


def size_text(num_bytes: int) -> str:
    """Decimal units: 1.6 MB, 2.49 GB."""
    if num_bytes >= 1e9:
        return f"{num_bytes / 1e9:.2f} GB"
    return f"{num_bytes / 1e6:.1f} MB"


def decode_image(path: Path, *, crop: int | None, image_size: int, channels: int) -> torch.Tensor:
    """One file as a (C, S, S) uint8 tensor: the centred crop x crop square (the largest centred square when
    `crop` is None), resized to image_size x image_size with PIL's bilinear filter (antialiased: when it
    shrinks, the filter widens to cover every source pixel)."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    with Image.open(path) as image:
        image = image.convert(mode)
        side = min(image.size) if crop is None else crop
        if side > min(image.size):
            raise ValueError(f"the image is {image.width}x{image.height}, smaller than the {side}x{side} crop")
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((image_size, image_size), Image.BILINEAR)
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(image_size, image_size, channels).permute(2, 0, 1)


def decode_images(
    files: Sequence[Path], *, crop: int | None, image_size: int, channels: int, skip_bad: bool, desc: str
) -> Decoded:
    """Every file decoded (`decode_image`) into one preallocated tensor, on a few threads (PIL decodes and
    resizes outside the GIL), with a progress bar or log lines. An unreadable file raises UnreadableImage,
    or with `skip_bad` is counted and left out."""
    from PIL import UnidentifiedImageError

    def decode(path: Path) -> torch.Tensor | str:
        try:
            return decode_image(path, crop=crop, image_size=image_size, channels=channels)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            return type(error).__name__ if not str(error) or isinstance(error, OSError) else f"{error}"

    images = torch.empty((len(files), channels, image_size, image_size), dtype=torch.uint8)
    kept, skipped, reasons = [], [], []
    workers = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
    bar = progress(total=len(files), desc=desc, unit="image")
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(files), DECODE_CHUNK):
                chunk = files[start : start + DECODE_CHUNK]
                for index, result in enumerate(pool.map(decode, chunk), start):
                    if isinstance(result, str):
                        if not skip_bad:
                            raise UnreadableImage(files[index], result)
                        skipped.append(index)
                        reasons.append(result)
                    else:
                        images[len(kept)] = result
                        kept.append(index)
                    bar.update(1)
    finally:
        bar.close()
    # torch.save writes a view's whole storage: a shortened tensor is copied so the entry holds the kept images only
    return Decoded(images[: len(kept)].clone() if skipped else images, skipped, reasons)


def entry_key(files: Sequence[Path], *, folder: Path, crop: int | None, image_size: int, channels: int) -> str:
    """The digest an entry is found by: the folder, each file's relative name, size and mtime, the settings, the format."""
    digest = hashlib.sha256()
    settings = {"format": FORMAT_VERSION, "folder": str(folder.resolve()), "crop": crop, "size": image_size}
    digest.update(json.dumps({**settings, "channels": channels}, sort_keys=True).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"\n{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def entry_prefix(name: str, *, folder: Path, crop: int | None, image_size: int, channels: int) -> str:
    """The part of an entry's file name that names its folder and settings (the content digest follows it)."""
    folder_tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    return f"{name}-{folder_tag}-{image_size}px-crop{crop if crop is not None else 'square'}-{channels}ch-"


def _read_entry(path: Path, key: str) -> dict | None:
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged entry is decoded again, never trusted
        log.warning("image cache: %s cannot be read (%s); decoding again", path, type(error).__name__)
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or entry.get("format") != FORMAT_VERSION:
        log.warning("image cache: %s is not the entry it is named for; decoding again", path)
        return None
    return entry


def _write_entry(path: Path, entry: dict, *, stale: list[Path]) -> None:
    """torch.save into a temporary file beside `path`, then renamed onto it; a failure (no space, no
    permission) is logged and the run goes on without a cache."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False) as f:
            temporary = Path(f.name)
            torch.save(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError as error:
        log.warning("image cache: could not write %s (%s); the next launch decodes again", path, error)
        return
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    size = entry["images"].numel()
    log.info("image cache: wrote %s (%s, %d images)", path, size_text(size), entry["images"].shape[0])
    for old in stale:  # the same folder at the same settings, before it changed
        old.unlink(missing_ok=True)
        log.info("image cache: removed %s, an entry for an older state of the folder", old)


def load_images(
    files: Sequence[Path],
    *,
    folder: Path,
    name: str,
    crop: int | None,
    image_size: int,
    channels: int,
    skip_bad: bool,
    cache: Path | None,
) -> Decoded:
    """`files` (under `folder`) decoded, read from the cache folder `cache` when an entry for exactly
    these files and settings is there, else decoded and saved there; `cache` None decodes and writes nothing.

    With `skip_bad` false an unreadable file raises UnreadableImage, also when the entry was written
    by a launch that skipped it.
    """
    ensure_handler(log)
    folder = Path(folder)
    desc = f"{name}: decoding {len(files):,} images"
    settings = dict(crop=crop, image_size=image_size, channels=channels)
    if cache is None:
        return decode_images(files, **settings, skip_bad=skip_bad, desc=desc)
    key = entry_key(files, folder=folder, **settings)
    prefix = entry_prefix(name, folder=folder, **settings)
    path = Path(cache) / f"{prefix}{key[:16]}.pt"
    entry = _read_entry(path, key) if path.is_file() else None
    if entry is not None:
        images = entry["images"]
        log.info("image cache: read %d %s images from %s (%s)", images.shape[0], name, path, size_text(images.numel()))
        decoded = Decoded(images, list(entry["skipped"]), list(entry["reasons"]))
        if decoded.skipped and not skip_bad:
            raise UnreadableImage(files[decoded.skipped[0]], decoded.reasons[0])
        return decoded
    decoded = decode_images(files, **settings, skip_bad=skip_bad, desc=f"{desc} (once: cached in {cache})")
    stale = [old for old in Path(cache).glob(f"{prefix}*.pt") if old != path] if Path(cache).is_dir() else []
    entry = {
        "format": FORMAT_VERSION,
        "key": key,
        "images": decoded.images,
        "skipped": decoded.skipped,
        "reasons": decoded.reasons,
    }
    _write_entry(path, entry, stale=stale)
    return decoded
