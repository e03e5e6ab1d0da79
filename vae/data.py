"""Data sets as in-memory uint8 tensors, batched by index from a seeded permutation.

MNIST and Fashion-MNIST are read from their standard IDX files (gzipped or not). A split
is one (N, C, H, W) uint8 tensor and a label vector: no per-sample Python on the hot path.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import socket
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Folder names torchvision uses under the data root.
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
# Where Debian's packages put the files, flat.
SYSTEM_FOLDERS = {"fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")]}
DOWNLOAD_TIMEOUT_S = 10
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "synthetic": [f"{'ring' if label % 2 else 'stroke'} {label}" for label in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
CIFAR_FOLDER = "cifar-10-batches-py"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataNotFoundError(RuntimeError):
    """The data set's files are not where they were looked for, and could not be downloaded."""


@dataclass
class Split:
    images: torch.Tensor  # (N, C, H, W) uint8; binarized splits hold 0 or 255
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class DataSplits:
    train: Split
    val: Split
    test: Split
    class_names: list[str] | None = None


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (gzipped if its name ends in .gz) as a uint8 tensor of its declared shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are supported (type code {dtype_code:#x})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = math.prod(shape)
    if len(raw) - offset != expected:
        raise ValueError(f"{path} is truncated: header says {shape} ({expected} bytes), found {len(raw) - offset}")
    return torch.frombuffer(bytearray(raw[offset:]), dtype=torch.uint8).reshape(shape)


def _find_file(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def candidate_folders(name: str, root: Path) -> list[Path]:
    """Folders searched for a data set's IDX files, in order."""
    folders = [root, root / TORCHVISION_FOLDERS[name] / "raw"]
    return folders + SYSTEM_FOLDERS.get(name, [])


def find_idx_files(name: str, root: Path) -> dict[str, Path] | None:
    """The four IDX files, all from one folder among `candidate_folders`, or None."""
    for folder in candidate_folders(name, root):
        found = {key: _find_file([folder], stem) for key, stem in IDX_FILES.items()}
        if all(found.values()):
            return found
    return None


def missing_data_message(name: str, root: Path, reason: str = "") -> str:
    folders = "\n".join(f"    {folder.resolve()}" for folder in candidate_folders(name, root))
    files = "\n".join(f"    {stem}[.gz]" for stem in IDX_FILES.values())
    lines = [
        f"{name}: the IDX files are not in the data root {root.resolve()}.",
        f"Looked for\n{files}\nin\n{folders}",
    ]
    if reason:
        lines.append(f"Download failed: {reason}")
    lines += [
        "Point to a folder that holds them with `data.root=/path/to/data` or VAE_DATA_DIR=/path/to/data,",
        "or train offline at once with `data=synthetic`,",
        "or `data=fashion_mnist` after `apt-get install dataset-fashion-mnist`.",
    ]
    return "\n".join(lines)


def download_into(root: Path, fetch: Callable[[Path], None], wanted: list[str]) -> None:
    """Run `fetch(folder)` in a temporary folder and move `wanted` (paths relative to it) into `root`.

    Nothing is created under `root` unless every wanted path was fetched: a failed or interrupted
    download leaves the data root as it was (not even an empty folder). Each file is copied next to
    its destination and renamed into place, so a kill never leaves a partial file under its name.
    Raises DownloadFailed when `fetch` raises or leaves a wanted path missing.
    """
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # fail fast when offline instead of hanging
    try:
        with tempfile.TemporaryDirectory(prefix="vae-download-") as scratch:
            scratch = Path(scratch)
            try:
                fetch(scratch)
            except Exception as error:  # noqa: BLE001 - any failure means: no data, say why plainly
                lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
                raise DownloadFailed(lines[-1] if lines else type(error).__name__) from None  # the cause is last
            missing = [path for path in wanted if not (scratch / path).exists()]
            if missing:
                raise DownloadFailed(f"the downloader did not write {', '.join(missing)}")
            for path in wanted:
                sources = [scratch / path] if (scratch / path).is_file() else sorted((scratch / path).rglob("*"))
                for source in filter(Path.is_file, sources):
                    target = root / source.relative_to(scratch)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    partial = target.with_name(target.name + ".part")
                    shutil.copyfile(source, partial)
                    os.replace(partial, target)
    finally:
        socket.setdefaulttimeout(previous_timeout)


class DownloadFailed(RuntimeError):
    """A download that did not complete; the message is its cause in one line."""


def download_idx(name: str, root: Path) -> None:
    """Fetch the four IDX files with torchvision's downloader into root/<Name>/raw (nothing on failure)."""
    from torchvision import datasets

    dataset_class = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[name]
    raw = Path(TORCHVISION_FOLDERS[name]) / "raw"
    download_into(
        root,
        lambda folder: dataset_class(str(folder), train=True, download=True),
        [str(raw / f"{stem}.gz") for stem in IDX_FILES.values()],
    )


def load_idx(name: str, root: str | os.PathLike, *, download: bool) -> tuple[Split, Split]:
    """The train and test splits of MNIST or Fashion-MNIST from their IDX files; downloads only when they are missing."""
    root = Path(root).expanduser()
    files = find_idx_files(name, root)
    if files is None:
        if not download:
            raise DataNotFoundError(missing_data_message(name, root))
        try:
            download_idx(name, root)
        except DownloadFailed as error:
            raise DataNotFoundError(missing_data_message(name, root, str(error))) from None
        files = find_idx_files(name, root)
        if files is None:
            raise DataNotFoundError(missing_data_message(name, root, "the downloader wrote no IDX files"))
    splits = []
    for part in ("train", "test"):
        images = read_idx(files[f"{part}_images"]).unsqueeze(1)  # (N, 1, 28, 28)
        labels = read_idx(files[f"{part}_labels"]).long()
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{name} {part}: {images.shape[0]} images but {labels.shape[0]} labels")
        splits.append(Split(images.contiguous(), labels))
    return splits[0], splits[1]


def read_cifar_batches(folder: Path, names: list[str]) -> Split:
    """CIFAR-10's python pickles (dicts with `data` (N, 3072) uint8 and `labels`) as one (N, 3, 32, 32) split."""
    import pickle

    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")  # the format CIFAR-10 is published in
        images.append(torch.as_tensor(batch["data"], dtype=torch.uint8).reshape(-1, 3, 32, 32))
        labels.append(torch.as_tensor(batch["labels"], dtype=torch.long))
    return Split(torch.cat(images).contiguous(), torch.cat(labels))


def load_cifar10(root: str | os.PathLike, *, download: bool) -> tuple[Split, Split]:
    """CIFAR-10's train (50,000) and test (10,000) splits from root/cifar-10-batches-py, downloaded when missing."""
    root = Path(root).expanduser()
    folder = root / CIFAR_FOLDER
    train_names = [f"data_batch_{i}" for i in range(1, 6)]
    needed = [*train_names, "test_batch"]
    if not all((folder / name).is_file() for name in needed):
        message = (
            f"cifar10: {', '.join(needed)} are not all in {folder.resolve()}.\n"
            "Point to the folder that holds cifar-10-batches-py with `data.root=...` or VAE_DATA_DIR, "
            "or train offline at once with `data=synthetic`."
        )
        if not download:
            raise DataNotFoundError(message)
        from torchvision import datasets

        try:  # only the unpacked folder is kept, not the 170 MB archive
            download_into(root, lambda into: datasets.CIFAR10(str(into), train=True, download=True), [CIFAR_FOLDER])
        except DownloadFailed as error:
            raise DataNotFoundError(f"{message}\nDownload failed: {error}") from None
    return read_cifar_batches(folder, train_names), read_cifar_batches(folder, ["test_batch"])


def load_image_folder(
    path: str | os.PathLike, *, image_size: int, channels: int, skip_bad: bool
) -> tuple[Split, list[str], list[str]]:
    """Every image under `path` (recursively), resized to image_size x image_size, as one uint8 split.

    Labels are the first-level subfolder names (ImageFolder's layout), or 0 when the images
    lie flat. An unreadable file stops loading, naming it, unless `skip_bad` (then it is counted).
    Returns the split, the class names and the skipped files.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(f"folder: data.path {path.resolve()} is not a folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataNotFoundError(f"folder: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {path.resolve()}")
    class_names = sorted({p.relative_to(path).parts[0] for p in files if len(p.relative_to(path).parts) > 1})
    mode = "L" if channels == 1 else "RGB"
    images, labels, skipped = [], [], []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert(mode)
                side = min(image.size)  # centre crop to a square, then resize
                left, top = (image.width - side) // 2, (image.height - side) // 2
                image = image.crop((left, top, left + side, top + side)).resize(
                    (image_size, image_size), Image.BILINEAR
                )
                pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(
                    image_size, image_size, channels
                )
        except (UnidentifiedImageError, OSError, ValueError) as error:
            if not skip_bad:
                raise DataNotFoundError(
                    f"folder: cannot read {file} ({type(error).__name__}); remove it or set data.skip_bad=true"
                ) from None
            skipped.append(str(file))
            continue
        images.append(pixels.permute(2, 0, 1))
        parts = file.relative_to(path).parts
        labels.append(class_names.index(parts[0]) if len(parts) > 1 else 0)
    if not images:
        raise DataNotFoundError(f"folder: none of the {len(files)} files under {path.resolve()} could be read")
    return Split(torch.stack(images).contiguous(), torch.tensor(labels)), class_names or ["all"], skipped


def make_synthetic(num_images: int, *, image_shape: tuple[int, int, int], num_classes: int, seed: int) -> Split:
    """Structured images with labels, drawn in memory: one shape family per class.

    Even classes are strokes at a class-specific angle, odd classes rings of a
    class-specific radius; position, size and thickness vary per image. Colour images
    (C=3) tint each class differently.
    """
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = image_shape
    labels = torch.randint(0, num_classes, (num_images,), generator=generator)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(num_images, generator=generator)

    scale = min(height, width)
    ys = torch.arange(height, dtype=torch.float32).view(1, height, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, width)
    centre_y = (height - 1) / 2 + uniform(-0.1, 0.1) * scale
    centre_x = (width - 1) / 2 + uniform(-0.1, 0.1) * scale
    dy = ys - centre_y.view(-1, 1, 1)  # (N, H, W)
    dx = xs - centre_x.view(-1, 1, 1)
    thickness = uniform(0.03, 0.08) * scale

    # Strokes: distance to a segment through the centre at the class's angle.
    angle = labels.float() * math.pi / num_classes + uniform(-0.15, 0.15)
    direction_y, direction_x = torch.sin(angle).view(-1, 1, 1), torch.cos(angle).view(-1, 1, 1)
    half_length = (uniform(0.25, 0.4) * scale).view(-1, 1, 1)
    along = (dy * direction_y + dx * direction_x).clamp(-half_length, half_length)
    stroke_distance = torch.sqrt((dy - along * direction_y) ** 2 + (dx - along * direction_x) ** 2)

    # Rings: distance to a circle whose radius grows with the class.
    radius = (0.12 + 0.25 * labels.float() / num_classes) * scale * uniform(0.9, 1.1)
    ring_distance = (torch.sqrt(dy**2 + dx**2) - radius.view(-1, 1, 1)).abs()

    is_ring = (labels % 2 == 1).view(-1, 1, 1)
    distance = torch.where(is_ring, ring_distance, stroke_distance)
    ink = (1.0 - (distance - thickness.view(-1, 1, 1)).clamp(min=0.0)).clamp(0.0, 1.0)  # (N, H, W)
    if channels == 1:
        images = ink.unsqueeze(1)
    else:
        hue = labels.float() / num_classes * 2 * math.pi
        tint = torch.stack([0.5 + 0.5 * torch.cos(hue + k * 2 * math.pi / channels) for k in range(channels)], 1)
        images = ink.unsqueeze(1) * tint.view(num_images, channels, 1, 1)
    return Split((images * 255).round().to(torch.uint8), labels)


def hold_out(split: Split, num_val: int, *, seed: int) -> tuple[Split, Split]:
    """Split off `num_val` images, chosen by a seeded permutation, as validation data."""
    if not 0 < num_val < len(split):
        raise ValueError(f"data.val_split must be between 1 and {len(split) - 1} (got {num_val})")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    val_index, train_index = order[:num_val].sort().values, order[num_val:].sort().values
    return Split(split.images[train_index], split.labels[train_index]), Split(
        split.images[val_index], split.labels[val_index]
    )


def binarize_once(split: Split, *, seed: int) -> Split:
    """Bernoulli(pixel) drawn once with a fixed seed: the static binarization of a split."""
    probabilities = split.images.float() / 255.0
    generator = torch.Generator().manual_seed(seed)
    return Split(torch.bernoulli(probabilities, generator=generator).to(torch.uint8) * 255, split.labels)


def make_splits(
    train: Split,
    test: Split,
    *,
    val_source: str,
    num_val: int,
    split_seed: int,
    binarize: str,
    class_names: list[str],
) -> DataSplits:
    """Train, validation and test splits from a data set's train and test splits.

    Validation is `num_val` images held out of the training split (`holdout`) or the test
    split (`test`, as the lecture and the book did). With `binarize`, the evaluation splits are
    binarized once with a fixed seed (`dynamic` re-draws the training split every batch, see
    `to_model_input`; `static` binarizes it once too, with this project's own draw: not the
    fixed binarized files of Larochelle & Murray that published "static MNIST" numbers use).
    """
    if val_source == "holdout":
        train, val = hold_out(train, num_val, seed=split_seed)
    elif val_source == "test":
        val = test
    else:
        raise ValueError(f"data.val_source must be holdout or test (got {val_source!r})")
    if binarize in ("dynamic", "static"):
        val, test = binarize_once(val, seed=split_seed + 101), binarize_once(test, seed=split_seed + 102)
        if binarize == "static":
            train = binarize_once(train, seed=split_seed + 100)
    elif binarize != "none":
        raise ValueError(f"data.binarize must be none, dynamic or static (got {binarize!r})")
    return DataSplits(train=train, val=val, test=test, class_names=class_names)


def to_model_input(
    images: torch.Tensor, *, binarize_dynamic: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 images to floats in [0, 1]; with `binarize_dynamic`, a fresh Bernoulli draw."""
    x = images.float().div_(255.0)
    if binarize_dynamic:
        x = torch.bernoulli(x, generator=generator)
    return x


def epoch_batches(
    num_images: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True
) -> Iterator[torch.Tensor]:
    """Index tensors covering every image once, in an order fixed by (seed, epoch).

    Deriving the order from (seed, epoch) alone lets a resumed run see the same batches.
    """
    if shuffle:
        order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    else:
        order = torch.arange(num_images)
    yield from order.split(batch_size)
