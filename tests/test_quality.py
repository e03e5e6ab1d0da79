"""Sample quality: each metric against an independent reference, the feature spaces, and `python -m vae.quality`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from vae import features as feature_module
from vae import quality
from vae.features import FEATURES, DigitNet, FeatureError, heldout_indices, load_digit_net, load_features
from vae.quality_metrics import QualityError, check_counts, fid, kid, prdc, score

from conftest import REPO

DIGITS = REPO / "tests" / "data" / "mnist_test_digits.npz"  # 300 MNIST test digits (every 33rd), with labels


def _gaussian(n: int, d: int, *, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def test_fid_equals_the_frechet_distance_computed_with_scipy_s_sqrtm():
    a, b = _gaussian(300, 6, seed=1) * 1.3, _gaussian(400, 6, shift=0.4, seed=2)
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    cov_a, cov_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    assert fid(a, b) == pytest.approx(expected, rel=1e-6)


def test_kid_is_the_unbiased_polynomial_mmd_when_the_subset_is_the_whole_set():
    a, b = _gaussian(40, 5, seed=3), _gaussian(40, 5, shift=0.3, seed=4)
    mean, std, size = kid(a, b, subsets=5)
    d = a.shape[1]

    def k(x, y):
        return (x @ y.T / d + 1) ** 3

    m = len(a)
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    expected = (
        (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        - 2 * kxy.sum() / m**2
    )
    assert size == 40 and mean == pytest.approx(expected.item(), rel=1e-6) and std == pytest.approx(0, abs=1e-9)


def _brute_prdc(a: torch.Tensor, b: torch.Tensor, pr_k: int, dc_k: int) -> dict:
    """Precision, recall, density and coverage by loops over points, as the papers define them."""

    def radius(points, i, k):
        others = sorted(float(torch.dist(points[i], points[j])) for j in range(len(points)) if j != i)
        return others[k - 1]

    rb_pr = [radius(b, i, pr_k) for i in range(len(b))]
    ra_pr = [radius(a, j, pr_k) for j in range(len(a))]
    rb_dc = [radius(b, i, dc_k) for i in range(len(b))]
    dist = [[float(torch.dist(a[j], b[i])) for i in range(len(b))] for j in range(len(a))]
    precision = sum(any(dist[j][i] < rb_pr[i] for i in range(len(b))) for j in range(len(a))) / len(a)
    recall = sum(any(dist[j][i] < ra_pr[j] for j in range(len(a))) for i in range(len(b))) / len(b)
    density = sum(sum(dist[j][i] < rb_dc[i] for i in range(len(b))) for j in range(len(a))) / (dc_k * len(a))
    coverage = sum(min(dist[j][i] for j in range(len(a))) < rb_dc[i] for i in range(len(b))) / len(b)
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_precision_recall_density_coverage_equal_a_brute_force_nearest_neighbour_count():
    a, b = _gaussian(37, 4, seed=5) + 1.0, _gaussian(45, 4, seed=6)
    got = prdc(a, b, chunk=10)  # chunks smaller than the sets: the chunked path
    expected = _brute_prdc(a, b, pr_k=3, dc_k=5)
    assert got == pytest.approx(expected, abs=1e-12)
    assert all(0 < got[key] < 1 for key in ("precision", "recall", "coverage"))


def test_a_set_against_itself_scores_fid_zero_and_full_precision_and_recall():
    a = _gaussian(300, 8, seed=7)
    result = score(a, a.clone())
    # (the unbiased KID of a set against itself is slightly negative: its cross term keeps the identical pairs)
    assert result["fid"] == pytest.approx(0, abs=1e-6) and result["kid_mean"] <= 1e-9
    assert result["precision"] == result["recall"] == result["coverage"] == 1.0
    assert result["n_a"] == result["n_b"] == 300


def test_fid_rises_and_precision_falls_as_a_set_is_shifted_further():
    b = _gaussian(400, 8, seed=8)
    ladder = [score(_gaussian(400, 8, shift=shift, seed=9), b) for shift in (0.0, 0.5, 1.0, 2.0)]
    fids, precisions = [r["fid"] for r in ladder], [r["precision"] for r in ladder]
    assert fids == sorted(fids) and len(set(fids)) == 4
    assert precisions == sorted(precisions, reverse=True) and precisions[-1] < 0.2 < 0.8 < precisions[0]


def test_too_few_images_for_a_metric_are_refused_naming_it():
    with pytest.raises(
        QualityError, match="FID needs more images than feature dimensions: a has 100, the features have 128"
    ):
        check_counts(100, 5000, 128)
    with pytest.raises(QualityError, match="density and coverage"):
        check_counts(5, 5, 2)


# ---------------------------------------------------------------- feature spaces


def test_the_mnist_classifier_ships_with_its_hash_and_recognises_the_digits_shipped_with_the_tests():
    net, record = load_digit_net("mnist")
    assert record["test_accuracy"] >= 0.99 and record["bytes"] < 1_000_000
    assert record["sha256"] == feature_module.sha256_of(feature_module.NETS / "mnist.pt")
    digits = np.load(DIGITS)
    images, labels = torch.from_numpy(digits["images"]), torch.from_numpy(digits["labels"])
    with torch.no_grad():
        predicted = net(images[:, None].float() / 255).argmax(1)
    assert (predicted == labels).float().mean() >= 0.95
    space = load_features("mnist")
    assert space(images[:, None]).shape == (len(images), 128) and space.label == "MNIST features"


def test_a_changed_classifier_file_is_refused(tmp_path):
    for name in ("mnist.pt", "mnist.json"):
        (tmp_path / name).write_bytes((feature_module.NETS / name).read_bytes())
    (tmp_path / "mnist.pt").write_bytes((tmp_path / "mnist.pt").read_bytes() + b"\0")
    with pytest.raises(FeatureError, match="SHA-256 .* not the recorded"):
        load_digit_net("mnist", nets=tmp_path)
    with pytest.raises(FeatureError, match="train_features.py --data fashion"):
        load_digit_net("fashion", nets=tmp_path)


def test_the_held_out_images_are_a_fixed_seeded_tenth_of_the_training_split():
    first, again = heldout_indices(60_000), heldout_indices(60_000)
    assert torch.equal(first, again) and len(first) == 10_000 and len(first.unique()) == 10_000


def test_inception_without_its_weights_is_refused_naming_the_file(monkeypatch, tmp_path):
    monkeypatch.delenv("VAE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(
        FeatureError, match="weights-inception-2015-12-05-6726825d.pth.*6726825d.*VAE_INCEPTION_WEIGHTS"
    ):
        load_features("inception")


@pytest.mark.slow
def test_inception_features_with_weights_made_in_the_test(monkeypatch, tmp_path):
    """The real loading path, on InceptionV3 weights of the right layout made here (the real ones cannot be fetched)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("quality_speed", REPO / "experiments/quality/speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    path = speed.made_up_inception(tmp_path)
    monkeypatch.setenv("VAE_INCEPTION_WEIGHTS", str(path))
    with pytest.raises(FeatureError, match="not 6726825d"):
        load_features("inception")  # the made-up file does not have the real file's hash
    monkeypatch.setattr(feature_module, "INCEPTION_HASH_PREFIX", feature_module.sha256_of(path)[:8])
    space = load_features("inception")
    gray = (torch.rand(3, 1, 28, 28) * 255).to(torch.uint8)
    out = space(gray)
    assert out.shape == (3, 2048) and out.dtype == torch.float64 and torch.isfinite(out).all()
    assert torch.allclose(out, space(gray.expand(-1, 3, -1, -1)))  # gray replicated to RGB
    space.check((3, 64, 64), "colour images")
    with pytest.raises(FeatureError, match="takes"):
        space.check((2, 64, 64), "two-channel images")


# ---------------------------------------------------------------- python -m vae.quality


def _write_pngs(folder, images):
    from PIL import Image

    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(folder / f"{i:04d}.png")


def test_the_pair_form_scores_two_folders_and_writes_the_json(tmp_path, capsys):
    digits = np.load(DIGITS)
    images = torch.from_numpy(digits["images"])[:, None]
    _write_pngs(tmp_path / "a", images[:150])
    np.savez(tmp_path / "b.npz", images=images[150:].numpy()[:, 0])
    out = tmp_path / "scores" / "ab.json"
    result = quality.main([f"a={tmp_path / 'a'}", f"b={tmp_path / 'b.npz'}", "features=mnist", f"out={out}"])
    written = json.loads(out.read_text())
    keys = {"fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "features", "features_sha256"}
    assert keys | {"n_a", "n_b"} <= written.keys() and written["features"] == "mnist"
    assert written["n_a"] == 150 and written["n_b"] == len(images) - 150 and result["fid"] == written["fid"]
    assert "FID (MNIST features)" in capsys.readouterr().out
    # the same set against itself
    same = quality.main([f"a={tmp_path / 'a'}", f"b={tmp_path / 'a'}", "features=mnist"])
    assert same["fid"] == pytest.approx(0, abs=1e-6) and same["precision"] == 1.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["a={a}", "b={a}"], "features= is required here: one of mnist, fashion_mnist, inception"),
        (["a={a}", "b={a}", "features=vgg"], r"features must be one of mnist, fashion_mnist, inception \(got 'vgg'\)"),
        (["a={empty}", "b={a}", "features=mnist"], "a=.*holds no image"),
        (["a={a}", "b={tmp}/nope", "features=mnist"], "b=.*no such folder or .npz"),
        (["a={big}", "b={a}", "features=mnist"], "features=mnist takes 1x28x28 images; a's images are 1x32x32"),
        (["a={a}", "b={a}", "features=mnist", "out={tmp}/x.txt"], "out must name a .json file"),
        (["a={a}"], "b= is required beside a="),
        (["features=mnist"], "run= is required"),
    ],
)
def test_the_pair_form_refuses_bad_input_by_name_writing_nothing(tmp_path, argv, message):
    images = (torch.rand(20, 1, 28, 28) * 255).to(torch.uint8)
    _write_pngs(tmp_path / "a", images)
    (tmp_path / "empty").mkdir()
    _write_pngs(tmp_path / "big", (torch.rand(20, 1, 32, 32) * 255).to(torch.uint8))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    words = [w.format(a=tmp_path / "a", empty=tmp_path / "empty", big=tmp_path / "big", tmp=tmp_path) for w in argv]
    with pytest.raises(SystemExit, match=message):
        quality.main(words)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_the_run_form_on_a_synthetic_run_scores_samples_and_reconstructions_and_keeps_the_file(tmp_path, capsys):
    from vae.train import train

    from conftest import TINY, compose_config

    tiny_run = tmp_path / "run"
    train(compose_config([*TINY, "data.num_val=200", "epochs=1", "snapshot_every_epochs=1"]), tiny_run)
    with pytest.raises(SystemExit, match="data=synthetic has no default feature space: name one with features="):
        quality.main([f"run={tiny_run}"])
    result = quality.main([f"run={tiny_run}", "features=mnist", "n=300", "split=val"])
    for key in ("samples", "reconstructions"):
        assert math.isfinite(result[key]["fid"]) and 0 <= result[key]["precision"] <= 1
    assert result["samples"]["n_a"] == 300 and result["reconstructions"]["n_a"] == result["samples"]["n_b"]
    assert "floor" not in result  # the mnist classifier's held-out images are not synthetic data's
    assert result["fid"] == result["samples"]["fid"] and result["features"] == "mnist"
    kept = tiny_run / "evals" / "quality_best_val_mnist_n300_t1_s0.json"
    assert json.loads(kept.read_text())["samples"] == result["samples"]
    again = quality.main([f"run={tiny_run}", "features=mnist", "n=300", "split=val", "seed=1"])
    assert (tiny_run / "evals" / "quality_best_val_mnist_n300_t1_s1.json").is_file() and kept.is_file()
    assert again["samples"]["fid"] != result["samples"]["fid"]
    assert "FID (MNIST features)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="FID needs more images than feature dimensions: a has 50"):
        quality.main([f"run={tiny_run}", "features=mnist", "n=50", "split=val"])
    with pytest.raises(SystemExit, match="FID needs more images than feature dimensions: b has 64"):
        quality.main([f"run={tiny_run}", "features=mnist", "n=300", "split=test"])  # the 64 test images
    with pytest.raises(SystemExit, match=r"n must be an integer from 1 to 200000: .* about 1716.8 GB at n=100000000"):
        quality.main([f"run={tiny_run}", "features=mnist", "n=100000000"])
    # A snapshot scores like any checkpoint, into a file named by it; a name that is none is refused by key.
    snapshot = quality.main([f"run={tiny_run}", "features=mnist", "n=300", "split=val", "checkpoint=epoch_0001"])
    assert snapshot["epoch"] == 1 and (tiny_run / "evals" / "quality_epoch_0001_val_mnist_n300_t1_s0.json").is_file()
    with pytest.raises(SystemExit, match=r"checkpoint must be best, last or a snapshot epoch_NNNN .*got 'epoch_1'"):
        quality.main([f"run={tiny_run}", "features=mnist", "checkpoint=epoch_1"])
    # samples_only: the same samples scored alone (the same numbers), into a file of its own
    alone = quality.main([f"run={tiny_run}", "features=mnist", "n=300", "split=val", "samples_only=true"])
    assert alone["samples"] == result["samples"] and alone["samples_only"] and "reconstructions" not in alone
    assert (tiny_run / "evals" / "quality_best_val_mnist_n300_t1_s0_samples.json").is_file()
    assert json.loads(kept.read_text())["samples"] == result["samples"]  # the full result is not overwritten


def test_every_feature_space_is_registered_once():
    assert FEATURES.names() == ("mnist", "fashion_mnist", "inception")
    assert DigitNet().features(torch.zeros(2, 1, 28, 28)).shape == (2, DigitNet.num_features)


def test_quality_every_epochs_logs_fid_on_its_epochs_and_refuses_what_cannot_work(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vae.config import ConfigError
    from vae.train import train

    from conftest import TINY, compose_config

    common = [*TINY, "data.num_val=200", "epochs=2"]
    metrics = train(
        compose_config([*common, "quality_every_epochs=2", "quality_features=mnist", "quality_n=150"]), tmp_path / "a"
    )
    first, second = metrics["history"]
    assert "val_fid_mnist" not in first and math.isfinite(second["val_fid_mnist"]) and second["quality_seconds"] > 0
    assert 0 <= second["val_precision_mnist"] <= 1
    events = EventAccumulator(str(tmp_path / "a")).Reload()
    assert [e.step for e in events.Scalars("val/fid_mnist")] == [2]
    with pytest.raises(
        ConfigError, match="quality_features must be one of mnist, fashion_mnist, inception for data=synthetic"
    ):
        train(compose_config([*common, "quality_every_epochs=1"]), tmp_path / "b")
    with pytest.raises(ConfigError, match="quality_every_epochs: FID needs more images .* \\(quality_n=100\\)"):
        train(
            compose_config([*common, "quality_every_epochs=1", "quality_features=mnist", "quality_n=100"]),
            tmp_path / "c",
        )


def test_the_quality_readme_holds_the_tables_of_its_committed_records():
    import subprocess
    import sys

    printed = subprocess.run(
        [sys.executable, str(REPO / "experiments/quality/tables.py")], capture_output=True, text=True, check=True
    ).stdout
    readme = (REPO / "experiments/quality/README.md").read_text()
    missing = [line for line in printed.splitlines() if line.strip() and line not in readme]
    assert missing == []
    record = json.loads((REPO / "experiments/quality/sanity.json").read_text())
    for space in record["spaces"].values():  # the ladders are monotonic in every network
        rows = space["rows"]
        for ladder in (
            ["floor (held-out training images)", *(f"blur sigma {s}" for s in ("0.5", "1", "1.5", "2"))],
            ["floor (held-out training images)", *(f"noise sd {s}" for s in ("0.05", "0.1", "0.2", "0.4"))],
        ):
            fids = [rows[label]["fid"] for label in ladder]
            precisions = [rows[label]["precision"] for label in ladder]
            assert fids == sorted(fids) and precisions == sorted(precisions, reverse=True)
