"""Colour data: CIFAR-10 in its on-disk format, any folder of images, and training and exploring on them."""

from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image

from vae.build import build_data
from vae.config import compose_dict
from vae.data import DataNotFoundError, load_image_folder
from vae.train import train

from conftest import TINY, compose_config


def write_fake_cifar(root, per_batch: int = 4, protocol: int = 2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = torch.randint(0, 256, (per_batch, 3072), generator=generator, dtype=torch.uint8)
        labels = torch.randint(0, 10, (per_batch,), generator=generator).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data.numpy(), "labels": labels, "batch_label": name.encode()}, f, protocol=protocol)
        written[name] = (data, labels)
    return written


def test_cifar10_reads_its_python_batches(tmp_path):
    written = write_fake_cifar(tmp_path)
    splits = build_data(
        compose_dict(["data=cifar10", f"data.root={tmp_path}", "data.val_split=5", "data.download=false"])
    )
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 4)
    data, labels = written["test_batch"]
    assert torch.equal(splits.test.images, data.view(-1, 3, 32, 32)) and splits.test.labels.tolist() == labels
    assert splits.class_names[0] == "airplane"


class _RunsACommand:
    """What a crafted pickle holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_crafted_cifar10_batch_is_refused_and_runs_nothing(tmp_path, protocol):
    write_fake_cifar(tmp_path)
    marker = tmp_path / "ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with open(batch, "wb") as f:
        pickle.dump({"data": _RunsACommand(marker), "labels": [0]}, f, protocol=protocol)
    with pytest.raises(ValueError, match=r"data_batch_1 is not a CIFAR-10 batch: it references posix.system"):
        build_data(compose_dict(["data=cifar10", f"data.root={tmp_path}", "data.val_split=5", "data.download=false"]))
    assert not marker.exists()
    # numpy arrays pickled the old way (protocol 2, as the published batches are) still load
    write_fake_cifar(tmp_path / "again", protocol=protocol)
    assert (
        len(build_data(compose_dict(["data=cifar10", f"data.root={tmp_path / 'again'}", "data.val_split=5"])).train)
        == 15
    )


def test_cifar10_missing_offline_says_where(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        build_data(compose_dict(["data=cifar10", f"data.root={tmp_path}", "data.download=false"]))


def make_image_folder(root, *, bad_file: bool = True):
    generator = torch.Generator().manual_seed(0)
    for class_name, colour in (("reds", (200, 30, 30)), ("blues", (30, 30, 200))):
        (root / class_name).mkdir(parents=True)
        for i in range(8):
            width, height = 40 + 4 * i, 36
            pixels = torch.randint(0, 40, (height, width, 3), generator=generator, dtype=torch.uint8)
            pixels += torch.tensor(colour, dtype=torch.uint8)
            Image.fromarray(pixels.numpy(), mode="RGB").save(root / class_name / f"{i}.png")
    if bad_file:
        (root / "reds" / "broken.png").write_bytes(b"this is not a png")


def test_an_unreadable_image_is_named_or_skipped_and_counted(tmp_path):
    make_image_folder(tmp_path)
    with pytest.raises(DataNotFoundError, match="broken.png"):
        load_image_folder(tmp_path, image_size=16, channels=3, skip_bad=False)
    split, class_names, skipped = load_image_folder(tmp_path, image_size=16, channels=3, skip_bad=True)
    assert split.images.shape == (16, 3, 16, 16) and class_names == ["blues", "reds"]
    assert [name.endswith("broken.png") for name in skipped] == [True]
    red = split.images[split.labels == 1].float().mean((0, 2, 3))
    assert red[0] > red[2]  # the reds folder is red


@pytest.mark.slow  # a training epoch and every explore figure, twice (about 4 s each on 2 cores)
@pytest.mark.parametrize("gen_loss", ["bce", "l2"])
def test_conv_vae_trains_on_a_folder_of_colour_images_and_the_tools_draw_it(tmp_path, gen_loss):
    make_image_folder(tmp_path / "images")
    cfg = compose_config(
        [
            *[o for o in TINY if not o.startswith("data")],
            "data=folder",
            f"data.path={tmp_path / 'images'}",
            "data.image_size=32",
            "data.skip_bad=true",
            "data.val_fraction=0.25",
            "epochs=1",
            "batch_size=4",
            f"gen_loss={gen_loss}",
            "latent_dim=3",
        ]
    )
    metrics = train(cfg, tmp_path / "run")
    assert metrics["epoch"] == 1 and metrics["val"]["neg_elbo_nats"] > 0
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["model"]["decoder.to_logits.weight"].shape[0] == 3  # three output channels
    from vae.explore import main as explore

    explore(
        [
            f"run={tmp_path / 'run'}",
            "grid_size=4",
            "pairs=1",
            "steps=3",
            "edit_images=2",
            "embedding_points=4",
            "attribute_class=0",
        ]
    )
    assert (tmp_path / "run" / "images" / "explore_latent_grid.png").is_file()
    assert (tmp_path / "run" / "images" / "explore_attribute_class_0.png").is_file()
