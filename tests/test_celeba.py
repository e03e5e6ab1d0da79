"""data=celeba on a tiny CelebA written in its exact layout (a planted attribute), and the decode cache it shares with data=folder."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from PIL import Image

from vae.build import build_data
from vae.config import ConfigError, compose_dict, validate
from vae.data import DataNotFoundError, Split, binarize_once, hold_out, load_image_folder
from vae.image_cache import decode_image

from conftest import TINY, compose_config, run_cli

# CelebA's 40 attributes, in list_attr_celeba.txt's order.
ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
SMILING = ATTRIBUTES.index("Smiling")
PARTS = [0] * 20 + [1] * 8 + [2] * 8  # train, valid, test: contiguous, as the published partition
MOUTH = (69, 140, 109, 160)  # (left, top, right, bottom) in a 178 x 218 aligned image: lower centre
# The mouth after the 148 crop (offset 15, 35) and the resize to 64 (x 64/148), a pixel inside its edges.
MOUTH_64 = (slice(46, 53), slice(24, 40))  # rows, columns


def write_celeba(root, parts=PARTS, seed: int = 0, *, flat: bool = False) -> torch.Tensor:
    """root/celeba as torchvision lays it out: 178 x 218 JPEGs, list_attr_celeba.txt, list_eval_partition.txt.

    Attributes are drawn at random; images whose Smiling is 1 get a white mouth. Returns the (N, 40) bool attributes.
    `flat`: each image one random gray level with a little noise (a face a small model learns in a few epochs).
    """
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    attributes = torch.rand(len(parts), len(ATTRIBUTES), generator=generator) < 0.5
    attributes[: len(parts) // 2, SMILING] = torch.arange(len(parts) // 2) % 2 == 0  # both kinds in every part
    attributes[len(parts) // 2 :, SMILING] = torch.arange(len(parts) - len(parts) // 2) % 2 == 1
    names = [f"{i + 1:06d}.jpg" for i in range(len(parts))]
    for name, row in zip(names, attributes):
        if flat:
            level = int(torch.randint(50, 110, (), generator=generator))
            pixels = torch.randint(level - 8, level + 8, (218, 178, 3), generator=generator, dtype=torch.uint8)
        else:
            pixels = torch.randint(40, 120, (218, 178, 3), generator=generator, dtype=torch.uint8)
        image = Image.fromarray(pixels.numpy(), mode="RGB")
        if row[SMILING]:
            image.paste((255, 255, 255), MOUTH)
        image.save(folder / "img_align_celeba" / name, quality=95)
    rows = [name + "".join(f" {1 if v else -1:>2}" for v in row.tolist()) for name, row in zip(names, attributes)]
    (folder / "list_attr_celeba.txt").write_text(f"{len(names)}\n{' '.join(ATTRIBUTES)} \n" + "\n".join(rows) + "\n")
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, parts)))
    return attributes


def celeba(root, *overrides: str) -> list[str]:
    return ["data=celeba", f"data.root={root}", *overrides]


class NoDecoding(AssertionError):
    pass


def forbid_decoding(monkeypatch) -> None:
    """PIL.Image.open fails: whatever still works reads no image file."""

    def refuse(*args, **kwargs):
        raise NoDecoding("an image was opened")

    monkeypatch.setattr(Image, "open", refuse)


def test_the_official_partition_with_images_and_attributes(tmp_path):
    attributes = write_celeba(tmp_path)
    splits = build_data(compose_dict(celeba(tmp_path, "data.cache=false")))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 8, 8)
    assert splits.class_names == ["all"] and splits.attribute_names == ATTRIBUTES
    for split, rows in ((splits.train, slice(0, 20)), (splits.val, slice(20, 28)), (splits.test, slice(28, 36))):
        assert split.images.shape == (len(split), 3, 64, 64) and split.images.dtype == torch.uint8
        assert split.labels.tolist() == [0] * len(split)
        assert split.attributes.dtype == torch.bool and torch.equal(split.attributes, attributes[rows])
    # The crop and the resize are the protocol's: crop 148 centred, then 64 x 64 (PIL bilinear).
    with Image.open(tmp_path / "celeba" / "img_align_celeba" / "000021.jpg") as image:
        expected = image.convert("RGB").crop((15, 35, 163, 183)).resize((64, 64), Image.BILINEAR)
    assert torch.equal(
        splits.val.images[0],
        torch.frombuffer(bytearray(expected.tobytes()), dtype=torch.uint8).view(64, 64, 3).permute(2, 0, 1),
    )
    # The planted attribute: after crop and resize, the mouth is bright exactly where Smiling is 1.
    images = torch.cat([splits.train.images, splits.val.images, splits.test.images])
    smiling = torch.cat([splits.train.attributes, splits.val.attributes, splits.test.attributes])[:, SMILING]
    mouth = images[:, :, MOUTH_64[0], MOUTH_64[1]].float().mean((1, 2, 3))
    assert smiling.any() and not smiling.all()
    assert mouth[smiling].min() > 230 and mouth[~smiling].max() < 130


def test_a_partition_that_is_not_contiguous_is_taken_image_by_image(tmp_path):
    parts = [0, 1, 2] * 4
    attributes = write_celeba(tmp_path, parts=parts)
    splits = build_data(compose_dict(celeba(tmp_path, "data.cache=false")))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 4, 4)
    assert torch.equal(splits.val.attributes, attributes[1::3]) and torch.equal(
        splits.test.attributes, attributes[2::3]
    )
    path = tmp_path / "celeba" / "img_align_celeba" / "000003.jpg"
    assert torch.equal(splits.test.images[0], decode_image(path, crop=148, image_size=64, channels=3))


def test_the_cache_is_written_once_read_back_and_missed_by_a_touched_folder(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="vae.image_cache")
    write_celeba(tmp_path)
    cache = tmp_path / "cache"
    config = compose_dict(celeba(tmp_path, f"data.cache_dir={cache}"))
    first = build_data(config)
    entries = sorted(cache.glob("*.pt"))
    assert len(entries) == 1 and entries[0].name.startswith("celeba-")
    assert entries[0].stat().st_size >= 36 * 3 * 64 * 64  # the images, uint8
    assert any("wrote" in r.message and str(entries[0]) in r.message and " MB" in r.message for r in caplog.records)
    caplog.clear()

    with monkeypatch.context() as patch:  # the second launch decodes nothing
        forbid_decoding(patch)
        second = build_data(config)
    assert any("read 36 celeba images" in r.message for r in caplog.records)
    for a, b in ((first.train, second.train), (first.val, second.val), (first.test, second.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.attributes, b.attributes)

    touched = tmp_path / "celeba" / "img_align_celeba" / "000005.jpg"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**10))  # touched: 10 s later
    with monkeypatch.context() as patch, pytest.raises(NoDecoding):  # not read from the stale entry
        forbid_decoding(patch)
        build_data(config)
    third = build_data(config)
    assert torch.equal(third.train.images, first.train.images)
    renewed = list(cache.glob("*.pt"))
    assert len(renewed) == 1 and renewed[0].name != entries[0].name  # a new entry replaced the stale one
    assert not list(cache.glob(".*"))  # no temporary file left behind


def test_cache_false_decodes_every_time_and_writes_nothing(tmp_path):
    write_celeba(tmp_path, parts=[0, 1, 2])
    cache = tmp_path / "cache"
    build_data(compose_dict(celeba(tmp_path, f"data.cache_dir={cache}", "data.cache=false")))
    assert not cache.exists()


def test_the_default_cache_folder_is_vae_cache_dir_which_tests_point_away_from_home(tmp_path, monkeypatch):
    from vae.image_cache import cache_folder

    assert os.environ["VAE_CACHE_DIR"] and not os.environ["VAE_CACHE_DIR"].startswith(
        str(os.path.expanduser("~/.cache"))
    )
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path / "env"))
    assert cache_folder(None) == tmp_path / "env" and cache_folder(str(tmp_path / "key")) == tmp_path / "key"
    monkeypatch.delenv("VAE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder(None) == tmp_path / "xdg" / "vae"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder(None) == tmp_path / "home" / ".cache" / "vae"


def test_a_folder_of_images_is_cached_too_and_an_added_file_misses(tmp_path, monkeypatch):
    images = tmp_path / "images"
    for colour in ("reds", "blues"):
        (images / colour).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40 + 4 * i, 36), (200, 30, 30) if colour == "reds" else (30, 30, 200)).save(
                images / colour / f"{i}.png"
            )
    cache = tmp_path / "cache"
    uncached, _, _ = load_image_folder(images, image_size=16, channels=3, skip_bad=False, cache=None)
    first, class_names, _ = load_image_folder(images, image_size=16, channels=3, skip_bad=False, cache=cache)
    assert torch.equal(first.images, uncached.images) and torch.equal(first.labels, uncached.labels)
    assert len(list(cache.glob("folder-*.pt"))) == 1
    with monkeypatch.context() as patch:
        forbid_decoding(patch)
        again, _, _ = load_image_folder(images, image_size=16, channels=3, skip_bad=False, cache=cache)
        assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
        Image.new("RGB", (40, 40), (30, 200, 30)).save(images / "reds" / "added.png")
        with pytest.raises(NoDecoding):  # the added file misses the cache
            load_image_folder(images, image_size=16, channels=3, skip_bad=False, cache=cache)
    grown, _, _ = load_image_folder(images, image_size=16, channels=3, skip_bad=False, cache=cache)
    assert len(grown) == 7 and class_names == ["blues", "reds"]
    # A file skipped when the entry was written is refused, by name, when skip_bad is off.
    (images / "reds" / "broken.png").write_bytes(b"not a png")
    skipping, _, skipped = load_image_folder(images, image_size=16, channels=3, skip_bad=True, cache=cache)
    assert len(skipping) == 7 and [s.endswith("broken.png") for s in skipped] == [True]
    with pytest.raises(DataNotFoundError, match="broken.png"):
        load_image_folder(images, image_size=16, channels=3, skip_bad=False, cache=cache)


def test_no_celeba_folder_says_what_where_and_how_to_get_it_before_decoding(tmp_path, monkeypatch):
    forbid_decoding(monkeypatch)
    with pytest.raises(DataNotFoundError) as error:
        build_data(compose_dict(celeba(tmp_path, "data.download=true")))
    message = str(error.value)
    for needed in (
        str((tmp_path / "celeba").resolve()),
        "img_align_celeba",
        "list_attr_celeba.txt",
        "list_eval_partition.txt",
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
        "torchvision.datasets.CelebA(root, download=True)",
        "never downloaded",
    ):
        assert needed in message, needed


@pytest.mark.parametrize("removed", ["list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba"])
def test_a_missing_list_file_or_image_folder_is_named(tmp_path, monkeypatch, removed):
    import shutil

    write_celeba(tmp_path, parts=[0, 1, 2])
    path = tmp_path / "celeba" / removed
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    forbid_decoding(monkeypatch)
    with pytest.raises(DataNotFoundError, match=f"missing {removed}") as error:
        build_data(compose_dict(celeba(tmp_path)))
    assert "never downloaded" not in str(error.value)  # data.download is false


def test_images_the_lists_name_but_the_folder_lacks_are_counted_with_an_example(tmp_path, monkeypatch):
    write_celeba(tmp_path, parts=[0, 1, 2, 0, 1, 2])
    for name in ("000002.jpg", "000004.jpg"):
        (tmp_path / "celeba" / "img_align_celeba" / name).unlink()
    forbid_decoding(monkeypatch)
    with pytest.raises(
        DataNotFoundError, match=r"2 of the 6 images list_eval_partition.txt names .* \(e.g. 000002.jpg\)"
    ):
        build_data(compose_dict(celeba(tmp_path)))


def test_a_truncated_attribute_list_is_refused_naming_it(tmp_path, monkeypatch):
    write_celeba(tmp_path, parts=[0, 1, 2, 0])
    attributes = tmp_path / "celeba" / "list_attr_celeba.txt"
    attributes.write_text("\n".join(attributes.read_text().splitlines()[:-1]) + "\n")
    forbid_decoding(monkeypatch)
    with pytest.raises(DataNotFoundError, match="list_attr_celeba.txt announces 4 images but lists 3"):
        build_data(compose_dict(celeba(tmp_path)))


@pytest.mark.parametrize(
    "override,message",
    [
        ("data.image_size=0", "data.image_size must be an integer >= 1 (got 0)"),
        ("data.crop=32", "data.crop must be at least data.image_size (64) (got 32)"),
        ("data.crop=200", "data.crop must be at most 178"),
        ("data.channels=2", "data.channels must be 1 (gray) or 3 (RGB) (got 2)"),
        ("data.val_source=holdout", "data.val_source must be official"),
    ],
)
def test_celeba_values_that_cannot_work_are_refused_naming_the_key(override, message):
    validate(compose_config(["data=celeba"]))
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        validate(compose_config(["data=celeba", override]))


def test_official_validation_belongs_to_celeba_only():
    with pytest.raises(ConfigError, match="^data.val_source must be holdout or test"):
        validate(compose_config(["data.val_source=official"]))


def test_attributes_travel_through_hold_out_and_binarization():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous() * 20
    attributes = torch.arange(10).view(10, 1).expand(10, 3).remainder(torch.tensor([2, 3, 5])) == 0
    split = Split(images, torch.zeros(10, dtype=torch.long), attributes)
    train, val = hold_out(split, 4, seed=0)
    for part in (train, val):
        tags = part.images[:, 0, 0, 0].long() // 20  # each image's index in `split`
        assert torch.equal(part.attributes, attributes[tags])
    assert torch.equal(binarize_once(val, seed=0).attributes, val.attributes)
    assert hold_out(Split(images, torch.zeros(10, dtype=torch.long)), 4, seed=0)[0].attributes is None


@pytest.mark.slow  # the trainer's CLI in a subprocess (about 10 s on 2 busy cores)
def test_the_trainer_trains_one_epoch_on_celeba(tmp_path):
    write_celeba(tmp_path / "data")
    run_dir = tmp_path / "run"
    model = [o for o in TINY if not o.startswith("data")]
    result = run_cli(
        "vae.train",
        *celeba(tmp_path / "data"),
        *model,
        "batch_size=8",
        "eval_batch_size=8",
        "num_image_samples=4",
        "grid_size=3",
        "latent_dim=4",
        "epochs=1",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epoch"] == 1 and metrics["val"]["neg_elbo_nats"] > 0
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["model"]["decoder.to_logits.weight"].shape[0] == 3  # three output channels
    assert "image cache: wrote" in (run_dir / "train.log").read_text()  # into the tests' VAE_CACHE_DIR
