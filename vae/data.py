"""Data sets as in-memory uint8 tensors, batched by index from a seeded permutation.

MNIST and Fashion-MNIST are read from their standard IDX files (gzipped or not), CelebA from
torchvision's layout of its aligned images and list files. A split is one (N, C, H, W) uint8
tensor and a label vector (and, for CelebA, an attribute matrix): no per-sample Python on the
hot path. Image files are decoded once and cached (`vae.image_cache`).
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


class DataFileError(DataNotFoundError):
    """A data file that is there but is not what its name says (truncated, not gzip, a bad header): the message
    names the file and how to get a good copy."""


class SplitError(ValueError):
    """A split setting the data cannot meet (data.val_split at or above the training split's size); the message
    names the key, the value and the split's size."""


@dataclass
class Split:
    images: torch.Tensor  # (N, C, H, W) uint8; binarized splits hold 0 or 255
    labels: torch.Tensor  # (N,) int64
    attributes: torch.Tensor | None = None  # (N, A) bool, the data set's binary attributes (CelebA's 40), or None

    def __len__(self) -> int:
        return self.images.shape[0]

    def take(self, index: torch.Tensor) -> Split:
        """The images at `index` (a copy), with their labels and attributes."""
        attributes = None if self.attributes is None else self.attributes[index]
        return Split(self.images[index], self.labels[index], attributes)


@dataclass
class DataSplits:
    train: Split
    val: Split
    test: Split
    class_names: list[str] | None = None
    attribute_names: list[str] | None = None  # the columns of each split's `attributes` (CelebA's), or None


@dataclass
class StoredData:
    """What a data set's builder (`vae.build.DATASETS`) returns: its stored splits and how validation is drawn.

    `val_source` is holdout (`num_val` images of `train`), test (the test split) or official (`val`,
    the data set's own validation split: CelebA's).
    """

    train: Split
    test: Split
    num_val: int
    class_names: list[str]
    val_source: str
    val: Split | None = None
    attribute_names: list[str] | None = None


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (gzipped if its name ends in .gz) as a uint8 tensor of its declared shape; DataFileError naming
    the file when it is truncated, not gzip though named so, or not IDX."""
    fix = "delete it to download it afresh, or point data.root (or VAE_DATA_DIR) at a good copy"
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:  # a cut download, a file that is not gzip
        raise DataFileError(f"{path} cannot be read ({type(error).__name__}: {error}); {fix}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataFileError(f"{path} is not an IDX file (bad magic number); {fix}")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataFileError(f"{path}: only unsigned-byte IDX files are supported (type code {dtype_code:#x}); {fix}")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = math.prod(shape)
    if len(raw) - offset != expected:
        raise DataFileError(
            f"{path} is truncated: its header says {shape} ({expected} bytes), found {len(raw) - offset}; {fix}"
        )
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


# What CIFAR-10's python batches may reference when unpickled: numpy arrays and dtypes, nothing else. A pickle
# can run any callable it names; a data folder is user input, so every other name is refused.
CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),  # numpy arrays pickled at protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol < 3 (harmless: encodes a string)
}


def load_cifar_batch(path: Path) -> dict:
    """One CIFAR-10 batch through an unpickler that admits only the numpy types of its format; ValueError naming
    the file and the refused name for anything else (a crafted batch runs nothing)."""
    import pickle

    import numpy

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) not in CIFAR_PICKLE_GLOBALS:
                raise pickle.UnpicklingError(f"{module}.{name}")
            if module.startswith("numpy.core.") and hasattr(numpy, "_core"):
                module = "numpy._core." + module[len("numpy.core.") :]  # numpy 2's name, without its warning
            elif module.startswith("numpy._core.") and not hasattr(numpy, "_core"):
                module = "numpy.core." + module[len("numpy._core.") :]  # written by numpy 2, read by numpy 1
            return super().find_class(module, name)

    try:
        with open(path, "rb") as f:
            batch = Restricted(f, encoding="latin1").load()  # the format CIFAR-10 is published in
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} is not a CIFAR-10 batch: it references {error}, which the format never does (refused, nothing "
            "of it was run); replace the folder with a copy from https://www.cs.toronto.edu/~kriz/cifar.html"
        ) from None
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch (no 'data' and 'labels'); replace it with a clean copy")
    return batch


def read_cifar_batches(folder: Path, names: list[str]) -> Split:
    """CIFAR-10's python pickles (dicts with `data` (N, 3072) uint8 and `labels`) as one (N, 3, 32, 32) split."""
    images, labels = [], []
    for name in names:
        batch = load_cifar_batch(folder / name)
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


CELEBA_FOLDER = "celeba"  # under the data root, as torchvision.datasets.CelebA lays it out
CELEBA_IMAGES = "img_align_celeba"
CELEBA_ATTRIBUTES = "list_attr_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_PARTS = {"train": 0, "valid": 1, "test": 2}  # list_eval_partition.txt's codes
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


def celeba_message(folder: Path, problem: str, *, download: bool) -> str:
    """What is wrong with the CelebA folder, where it was looked for and where to get CelebA."""
    lines = [
        f"celeba: {problem}",
        f"Looked in {folder.resolve()} for {CELEBA_IMAGES}/*.jpg, {CELEBA_ATTRIBUTES} and {CELEBA_PARTITION}.",
        f"CelebA's aligned images and list files: {CELEBA_URL} (Google Drive or Baidu), or",
        "torchvision.datasets.CelebA(root, download=True) on a machine with network, which makes this layout",
        "under root/celeba; then `data.root=<root>` or VAE_DATA_DIR=<root>.",
    ]
    if download:
        lines.append("data.download=true does nothing for celeba: it is never downloaded here; fetch it as above.")
    return "\n".join(lines)


def read_celeba_partition(path: Path) -> tuple[list[str], torch.Tensor]:
    """list_eval_partition.txt (`000001.jpg 0` lines): the image names and their part (0 train, 1 valid, 2 test)."""
    tokens = path.read_text().split()
    names, parts = tokens[0::2], tokens[1::2]
    if len(names) != len(parts) or not set(parts) <= {"0", "1", "2"}:
        raise ValueError(f"{path.name} is not `<image> <0|1|2>` lines")
    return names, torch.tensor([int(part) for part in parts], dtype=torch.uint8)


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """list_attr_celeba.txt: the image count, the attribute names, then `000001.jpg -1  1 ...` per image.

    Returns the image names, the attribute names and an (N, A) bool tensor (True where the file says 1).
    """
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise ValueError(f"{path.name} does not start with the image count and the attribute names")
    count, attribute_names, rows = int(lines[0]), lines[1].split(), lines[2:]
    if len(rows) != count:
        raise ValueError(f"{path.name} announces {count} images but lists {len(rows)}")
    names, flags = [], []
    for number, row in enumerate(rows, 3):
        name, _, values = row.strip().partition(" ")
        values = values.replace("-1", "0").replace(" ", "").replace("\t", "")  # "-1  1 ..." -> "01..."
        if len(values) != len(attribute_names) or values.strip("01"):
            raise ValueError(f"{path.name} line {number} is not {len(attribute_names)} values of -1 or 1")
        names.append(name)
        flags.append(values)
    table = torch.frombuffer(bytearray("".join(flags).encode()), dtype=torch.uint8) == ord("1")
    return names, attribute_names, table.view(count, len(attribute_names))


# long: every check that needs no decoding comes first, in the order a user fixes them, then the decode; one reading order
def load_celeba(
    root: str | os.PathLike, *, image_size: int, crop: int, channels: int, download: bool, cache: Path | None
) -> tuple[dict[str, Split], list[str]]:
    """CelebA's aligned images in its official partition, with their 40 attributes, from root/celeba.

    Each image (178 x 218) is centre-cropped to crop x crop and resized to image_size x image_size
    (`vae.image_cache.decode_image`: PIL's bilinear, antialiased); the decoded images are cached in
    `cache`. Everything is checked before any decoding: a missing folder or file, a list that does
    not parse, lists that disagree or name missing images raise DataNotFoundError within seconds.
    Nothing is downloaded. Returns {"train", "valid", "test"} splits (labels all 0) and the attribute names.
    """
    from vae.image_cache import UnreadableImage, load_images

    folder = Path(root).expanduser() / CELEBA_FOLDER
    images_folder = folder / CELEBA_IMAGES
    wanted = {f"{CELEBA_IMAGES}/": images_folder.is_dir()}
    wanted |= {name: (folder / name).is_file() for name in (CELEBA_ATTRIBUTES, CELEBA_PARTITION)}
    missing = [name for name, present in wanted.items() if not present]
    if missing:
        problem = f"{folder.resolve()} is not a folder" if not folder.is_dir() else f"missing {', '.join(missing)}"
        raise DataNotFoundError(celeba_message(folder, problem, download=download))
    try:
        names, parts = read_celeba_partition(folder / CELEBA_PARTITION)
        attribute_rows, attribute_names, attributes = read_celeba_attributes(folder / CELEBA_ATTRIBUTES)
    except (ValueError, UnicodeDecodeError) as error:
        message = celeba_message(folder, f"incomplete or damaged list file: {error}", download=download)
        raise DataNotFoundError(message) from None
    empty = [part for part, code in CELEBA_PARTS.items() if not bool((parts == code).any())]
    if empty:
        problem = f"{CELEBA_PARTITION} puts no image in {' or '.join(empty)} (codes {CELEBA_PARTS})"
        raise DataNotFoundError(celeba_message(folder, problem, download=download))
    if attribute_rows != names:  # the published lists name the same images in the same order
        row_of = {name: row for row, name in enumerate(attribute_rows)}
        unlisted = [name for name in names if name not in row_of]
        if unlisted or len(attribute_rows) != len(names):
            raise DataNotFoundError(
                celeba_message(
                    folder,
                    f"{CELEBA_ATTRIBUTES} ({len(attribute_rows):,} images) and {CELEBA_PARTITION} ({len(names):,}) "
                    f"do not list the same images"
                    + (f" ({len(unlisted):,} have no attributes, e.g. {unlisted[0]})" if unlisted else ""),
                    download=download,
                )
            )
        attributes = attributes[torch.tensor([row_of[name] for name in names])]
    present = set(os.listdir(images_folder))
    absent = [name for name in names if name not in present]
    if absent:
        raise DataNotFoundError(
            celeba_message(
                folder,
                f"{len(absent):,} of the {len(names):,} images {CELEBA_PARTITION} names are not in "
                f"{images_folder.resolve()} (e.g. {absent[0]}): an incomplete copy or extraction",
                download=download,
            )
        )
    try:
        decoded = load_images(
            [images_folder / name for name in names],
            folder=images_folder,
            name="celeba",
            crop=crop,
            image_size=image_size,
            channels=channels,
            skip_bad=False,
            cache=cache,
        )
    except UnreadableImage as error:
        raise DataNotFoundError(
            celeba_message(folder, f"cannot read {error.path} ({error.reason})", download=download)
        ) from None
    everything = Split(decoded.images, torch.zeros(len(names), dtype=torch.long), attributes)
    splits = {}
    for part, code in CELEBA_PARTS.items():
        index = torch.nonzero(parts == code).squeeze(1)
        contiguous = len(index) > 0 and int(index[-1] - index[0]) + 1 == len(index)
        if contiguous:  # the published partition: three runs of consecutive images, taken as views (no copy)
            start, stop = int(index[0]), int(index[-1]) + 1
            splits[part] = Split(everything.images[start:stop], everything.labels[start:stop], attributes[start:stop])
        else:
            splits[part] = everything.take(index)
    return splits, attribute_names


def load_image_folder(
    path: str | os.PathLike, *, image_size: int, channels: int, skip_bad: bool, cache: Path | None = None
) -> tuple[Split, list[str], list[str]]:
    """Every image under `path` (recursively), centre-cropped to a square and resized to image_size x image_size, as one uint8 split.

    Labels are the first-level subfolder names (ImageFolder's layout), or 0 when the images
    lie flat. An unreadable file stops loading, naming it, unless `skip_bad` (then it is counted).
    The decoded images are cached in the folder `cache` (`vae.image_cache`; None: decoded every time).
    Returns the split, the class names and the skipped files.
    """
    from vae.image_cache import UnreadableImage, load_images

    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(f"folder: data.path {path.resolve()} is not a folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataNotFoundError(f"folder: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {path.resolve()}")
    class_names = sorted({p.relative_to(path).parts[0] for p in files if len(p.relative_to(path).parts) > 1})
    try:
        decoded = load_images(
            files,
            folder=path,
            name="folder",
            crop=None,
            image_size=image_size,
            channels=channels,
            skip_bad=skip_bad,
            cache=cache,
        )
    except UnreadableImage as error:
        raise DataNotFoundError(
            f"folder: cannot read {error.path} ({error.reason}); remove it or set data.skip_bad=true"
        ) from None
    if len(decoded.skipped) == len(files):
        raise DataNotFoundError(f"folder: none of the {len(files)} files under {path.resolve()} could be read")
    skipped = set(decoded.skipped)
    kept = [file.relative_to(path).parts for index, file in enumerate(files) if index not in skipped]
    labels = torch.tensor([class_names.index(parts[0]) if len(parts) > 1 else 0 for parts in kept])
    return Split(decoded.images, labels), class_names or ["all"], [str(files[index]) for index in decoded.skipped]


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
        raise SplitError(
            f"data.val_split must be between 1 and {len(split) - 1}: the training split has {len(split)} images "
            f"(got {num_val})"
        )
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    val_index, train_index = order[:num_val].sort().values, order[num_val:].sort().values
    return split.take(train_index), split.take(val_index)


def binarize_once(split: Split, *, seed: int) -> Split:
    """Bernoulli(pixel) drawn once with a fixed seed: the static binarization of a split."""
    probabilities = split.images.float() / 255.0
    generator = torch.Generator().manual_seed(seed)
    images = torch.bernoulli(probabilities, generator=generator).to(torch.uint8) * 255
    return Split(images, split.labels, split.attributes)


def make_splits(
    train: Split,
    test: Split,
    *,
    val_source: str,
    num_val: int,
    split_seed: int,
    binarize: str,
    class_names: list[str],
    val: Split | None = None,
    attribute_names: list[str] | None = None,
) -> DataSplits:
    """Train, validation and test splits from a data set's train and test splits.

    Validation is `num_val` images held out of the training split (`holdout`), the test
    split (`test`, as the lecture and the book did) or the data set's own validation split `val`
    (`official`: CelebA's partition). With `binarize`, the evaluation splits are
    binarized once with a fixed seed (`dynamic` re-draws the training split every batch, see
    `to_model_input`; `static` binarizes it once too, with this project's own draw: not the
    fixed binarized files of Larochelle & Murray that published "static MNIST" numbers use).
    """
    if val_source == "holdout":
        train, val = hold_out(train, num_val, seed=split_seed)
    elif val_source == "test":
        val = test
    elif val_source != "official" or val is None:
        raise ValueError(
            f"data.val_source must be holdout, test or official with a validation split (got {val_source!r})"
        )
    if binarize in ("dynamic", "static"):
        val, test = binarize_once(val, seed=split_seed + 101), binarize_once(test, seed=split_seed + 102)
        if binarize == "static":
            train = binarize_once(train, seed=split_seed + 100)
    elif binarize != "none":
        raise ValueError(f"data.binarize must be none, dynamic or static (got {binarize!r})")
    return DataSplits(train=train, val=val, test=test, class_names=class_names, attribute_names=attribute_names)


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
