"""Data: IDX files read back exactly, missing data explained, synthetic data structured, batches by index."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from vae import data as data_module
from vae.build import build_data
from vae.config import compose_dict
from vae.data import (
    DataFileError,
    DataNotFoundError,
    binarize_once,
    epoch_batches,
    hold_out,
    load_idx,
    make_synthetic,
    read_idx,
    to_model_input,
)

from conftest import MNIST_LIKE


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, tensor.dim()) + struct.pack(f">{tensor.dim()}I", *tensor.shape)
    payload = header + bytes(tensor.flatten().tolist())
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


def write_fake_mnist(folder: Path, *, gz: bool, num_train: int = 12, num_test: int = 6) -> dict[str, torch.Tensor]:
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "train-images-idx3-ubyte": torch.randint(0, 256, (num_train, 28, 28), generator=generator, dtype=torch.uint8),
        "train-labels-idx1-ubyte": torch.randint(0, 10, (num_train,), generator=generator, dtype=torch.uint8),
        "t10k-images-idx3-ubyte": torch.randint(0, 256, (num_test, 28, 28), generator=generator, dtype=torch.uint8),
        "t10k-labels-idx1-ubyte": torch.randint(0, 10, (num_test,), generator=generator, dtype=torch.uint8),
    }
    for name, tensor in tensors.items():
        write_idx(folder / (name + (".gz" if gz else "")), tensor)
    return tensors


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_read_back_exactly(tmp_path, gz):
    tensors = write_fake_mnist(tmp_path, gz=gz)
    train, test = load_idx("mnist", tmp_path, download=False)
    assert torch.equal(train.images[:, 0], tensors["train-images-idx3-ubyte"])
    assert torch.equal(train.labels, tensors["train-labels-idx1-ubyte"].long())
    assert torch.equal(test.images[:, 0], tensors["t10k-images-idx3-ubyte"])
    assert train.images.shape == (12, 1, 28, 28) and train.images.dtype == torch.uint8


def test_idx_files_are_found_in_torchvision_layout(tmp_path):
    write_fake_mnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    train, _ = load_idx("fashion_mnist", tmp_path, download=False)
    assert len(train) == 12


def test_truncated_idx_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, torch.zeros(4, 28, 28, dtype=torch.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte is truncated: .*point data.root"):
        read_idx(path)


def test_missing_files_without_download_explain_where_and_what_to_do(tmp_path):
    with pytest.raises(DataNotFoundError) as error:
        load_idx("mnist", tmp_path / "empty", download=False)
    message = str(error.value)
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert stem in message
    for hint in (
        str((tmp_path / "empty").resolve()),
        "data.root=",
        "VAE_DATA_DIR",
        "data=synthetic",
        "dataset-fashion-mnist",
    ):
        assert hint in message


def test_a_failed_download_says_why_and_writes_nothing_into_a_root_with_files(tmp_path, monkeypatch):
    def offline(name, root):
        raise data_module.DownloadFailed("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data_module, "download_idx", offline)
    with pytest.raises(DataNotFoundError, match="name resolution"):
        load_idx("mnist", tmp_path, download=True)

    write_fake_mnist(tmp_path / "full", gz=True)
    before = sorted(p.name for p in (tmp_path / "full").iterdir())
    load_idx("mnist", tmp_path / "full", download=True)  # found: download is never called
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == before


def test_a_failed_download_creates_nothing_not_even_the_root(tmp_path, monkeypatch):
    import torchvision.datasets

    class HalfwayOffline:  # torchvision's MNIST as it fails offline: its folders made, one file half written
        def __init__(self, root, train, download):
            raw = Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True)
            (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b partial")
            raise RuntimeError(
                "Error downloading train-labels-idx1-ubyte.gz:\n<urlopen error [Errno -3] name resolution>"
            )

    monkeypatch.setattr(torchvision.datasets, "MNIST", HalfwayOffline)
    root = tmp_path / "nonexistent" / "data"
    with pytest.raises(DataNotFoundError, match="name resolution"):
        load_idx("mnist", root, download=True)
    assert list(tmp_path.iterdir()) == []


def test_a_whole_download_is_moved_into_the_root_file_by_file(tmp_path, monkeypatch):
    import torchvision.datasets

    files = write_fake_mnist(tmp_path / "source", gz=True)

    class Online:
        def __init__(self, root, train, download):
            raw = Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True)
            for path in (tmp_path / "source").iterdir():
                (raw / path.name).write_bytes(path.read_bytes())
            (raw / "train-images-idx3-ubyte").write_bytes(b"extracted copy, not kept")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Online)
    train, _ = load_idx("mnist", tmp_path / "root", download=True)
    kept = sorted(p.name for p in (tmp_path / "root" / "MNIST" / "raw").iterdir())
    assert kept == sorted(f"{stem}.gz" for stem in data_module.IDX_FILES.values())  # no .part, no extracted copy
    assert torch.equal(train.images.squeeze(1), files["train-images-idx3-ubyte"])


def test_synthetic_images_are_structured_not_noise():
    split = make_synthetic(1000, **MNIST_LIKE, seed=0)
    x = to_model_input(split.images).flatten(1)
    means = torch.stack([x[split.labels == c].mean(0) for c in range(10)])
    # A nearest-class-mean classifier is right far more often than chance (10%).
    predicted = torch.cdist(x, means).argmin(1)
    assert (predicted == split.labels).float().mean() > 0.6
    assert 0.02 < x.mean() < 0.5  # strokes on a dark background, like MNIST


def test_synthetic_data_is_fixed_by_its_seed_and_supports_colour():
    assert torch.equal(make_synthetic(50, **MNIST_LIKE, seed=3).images, make_synthetic(50, **MNIST_LIKE, seed=3).images)
    assert not torch.equal(
        make_synthetic(50, **MNIST_LIKE, seed=3).images, make_synthetic(50, **MNIST_LIKE, seed=4).images
    )
    colour = make_synthetic(20, image_shape=(3, 32, 32), num_classes=10, seed=0)
    assert colour.images.shape == (20, 3, 32, 32)


def test_hold_out_splits_disjoint_parts_of_the_training_split():
    split = make_synthetic(100, **MNIST_LIKE, seed=0)
    split.images[:, 0, 0, 0] = torch.arange(100, dtype=torch.uint8)  # tag each image
    train, val = hold_out(split, 30, seed=0)
    assert len(train) == 70 and len(val) == 30
    tags = set(train.images[:, 0, 0, 0].tolist()) | set(val.images[:, 0, 0, 0].tolist())
    assert len(tags) == 100
    assert torch.equal(hold_out(split, 30, seed=0)[1].images, val.images)


def test_validation_comes_from_the_test_split_when_asked(tmp_path):
    write_fake_mnist(tmp_path, gz=True)
    mnist = [f"data.root={tmp_path}", "data.download=false"]
    holdout = build_data(compose_dict([*mnist, "data.val_source=holdout", "data.val_split=4"]))
    assert (len(holdout.train), len(holdout.val), len(holdout.test)) == (8, 4, 6)
    test = build_data(compose_dict([*mnist, "data.val_source=test"]))
    assert len(test.train) == 12 and torch.equal(test.val.images, test.test.images)


def test_epoch_batches_cover_every_index_once_in_a_seeded_order():
    batches = list(epoch_batches(10, 4, seed=0, epoch=1))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert torch.equal(torch.cat(batches), torch.cat(list(epoch_batches(10, 4, seed=0, epoch=1))))
    assert not torch.equal(torch.cat(batches), torch.cat(list(epoch_batches(10, 4, seed=0, epoch=2))))


def test_static_binarization_is_fixed_and_binary():
    split = make_synthetic(20, **MNIST_LIKE, seed=0)
    once, again = binarize_once(split, seed=5), binarize_once(split, seed=5)
    assert torch.equal(once.images, again.images)
    assert set(once.images.unique().tolist()) <= {0, 255}


def test_dynamic_binarization_draws_afresh():
    images = torch.full((4, 1, 8, 8), 128, dtype=torch.uint8)
    first = to_model_input(images, binarize_dynamic=True, generator=torch.Generator().manual_seed(0))
    second = to_model_input(images, binarize_dynamic=True, generator=torch.Generator().manual_seed(1))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
