"""Latent-space tools: the grid, interpolation, attribute vectors, top-KL dims, and the commands that draw them."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch.distributions import Normal

from vae.build import build_data
from vae.distributions import DiagonalGaussian
from vae.latent import (
    attribute_vector,
    class_mean_latents,
    edit_latents,
    grid_latents,
    grid_quantiles,
    interpolate,
    mean_kl_per_dim,
    project_2d,
    thick_strokes,
    top_kl_dims,
)
from vae.runs import load_run

from conftest import run_cli


def test_grid_z_are_the_inverse_cdf_at_the_chosen_quantiles():
    quantiles = grid_quantiles(15)
    expected = Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 15))
    assert torch.allclose(quantiles, expected, atol=1e-6)
    assert quantiles[0] == pytest.approx(-1.6448536, abs=1e-5)  # qnorm(0.05)
    z = grid_latents(15, latent_dim=2).view(15, 15, 2)
    assert torch.allclose(z[0, :, 0], quantiles)  # x runs along a row
    assert torch.allclose(z[:, 0, 1], quantiles.flip(0))  # y points up: the top row is the largest


def test_grid_over_chosen_dims_leaves_the_others_at_zero():
    z = grid_latents(4, latent_dim=5, dims=(3, 1))
    assert z.shape == (16, 5)
    assert torch.count_nonzero(z[:, [0, 2, 4]]) == 0
    assert set(z[:, 3].unique().tolist()) == set(grid_quantiles(4).tolist())


def test_top_kl_dims_are_chosen_on_a_constructed_case():
    mu = torch.zeros(100, 6)
    log_var = torch.zeros(100, 6)
    mu[:, 4] = torch.linspace(-3, 3, 100)  # the most informative dim
    mu[:, 1] = torch.linspace(-1, 1, 100)
    log_var[:, 2] = -0.5  # a little KL from a narrower posterior
    kl = mean_kl_per_dim(DiagonalGaussian(mu, log_var))
    assert top_kl_dims(kl, 2) == [4, 1]
    points, names = project_2d(mu, kl_per_dim=kl, method="top_kl")
    assert torch.equal(points, mu[:, [4, 1]]) and "z[4]" in names


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_endpoints_equal_the_endpoints_latents(method):
    start, end = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([-0.5, 1.0, 2.0])
    path = interpolate(start, end, 7, method=method)
    assert path.shape == (7, 3)
    assert torch.allclose(path[0], start) and torch.allclose(path[-1], end)


def test_linear_interpolation_is_evenly_spaced_and_slerp_keeps_the_norm_of_equal_norm_ends():
    linear = interpolate(torch.zeros(2), torch.tensor([4.0, 0.0]), 5)
    assert torch.allclose(linear[:, 0], torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]))
    spherical = interpolate(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 9, method="slerp")
    assert torch.allclose(spherical.norm(dim=1), torch.ones(9), atol=1e-6)


def test_attribute_vector_is_the_difference_of_the_group_means():
    mu = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 0.0], [0.0, 4.0]])
    has = torch.tensor([True, True, False, False])
    assert torch.allclose(attribute_vector(mu, has), torch.tensor([2.0, 1.0]) - torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError):
        attribute_vector(mu, torch.ones(4, dtype=torch.bool))


def test_editing_decodes_mu_plus_k_times_s():
    mu, s = torch.tensor([[1.0, 1.0]]), torch.tensor([0.5, -1.0])
    edited = edit_latents(mu, s, torch.tensor([-2.0, 0.0, 3.0]))
    assert torch.allclose(edited[0], torch.tensor([[0.0, 3.0], [1.0, 1.0], [2.5, -2.0]]))


def test_class_means_and_thick_strokes():
    mu = torch.tensor([[0.0], [2.0], [10.0]])
    means = class_mean_latents(mu, torch.tensor([0, 0, 2]), 3)
    assert means[0].item() == 1.0 and means[2].item() == 10.0 and torch.isnan(means[1]).all()
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    images[2:] = 255
    assert thick_strokes(images).tolist() == [False, False, True, True]


def test_pca_projection_keeps_the_main_direction():
    generator = torch.Generator().manual_seed(0)
    mu = torch.randn(500, 5, generator=generator) * torch.tensor([0.1, 5.0, 0.1, 2.0, 0.1])
    points, names = project_2d(mu)
    assert points.shape == (500, 2) and "PC" in names
    assert float(points[:, 0].var()) == pytest.approx(float(mu[:, 1].var()), rel=0.1)


def _assert_real_picture(path):
    image = Image.open(path)
    assert image.size[0] >= 100 and image.size[1] >= 100
    extrema = image.convert("L").getextrema()
    assert extrema[0] < extrema[1], f"{path} is constant"


@pytest.mark.slow  # runs the CLI in a subprocess
def test_explore_and_generate_write_every_figure_for_a_tiny_run(tiny_run):
    result = run_cli(
        "vae.explore", f"run={tiny_run}", "grid_size=6", "pairs=3", "steps=5", "edit_images=3", "embedding_points=50"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = [
        "latent_grid",
        "scatter",
        "interpolation",
        "class_averages",
        "attribute_class_1",
        "attribute_thick_strokes",
        "attribute_averages_class_1",
        "attribute_averages_thick_strokes",
    ]
    for name in names:
        _assert_real_picture(tiny_run / "images" / f"explore_{name}.png")
    summary = json.loads((tiny_run / "explore.json").read_text())
    assert summary["grid_dims"] == [0, 1] and len(summary["kl_per_dim"]) == 2
    assert list(tiny_run.glob("*/test_mu/tensors.tsv")), "no embedding projector data"

    out = tiny_run / "gen" / "samples.png"
    result = run_cli("vae.generate", f"run={tiny_run}", "n=16", "temperature=0.5", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    _assert_real_picture(out)
    assert Image.open(out.with_name("samples_raw.png")).size == (
        8 * 30 + 2,
        2 * 30 + 2,
    )  # 8 per row, 28 px + 2 px padding


@pytest.mark.slow  # runs the CLI in a subprocess
def test_tools_refuse_a_bad_argument_naming_it(tiny_run, tmp_path):
    result = run_cli("vae.generate", f"run={tiny_run}", "n=0")
    assert result.returncode != 0 and "n must be an integer >= 1" in result.stderr
    result = run_cli("vae.generate", f"run={tiny_run}", "tempreature=2")
    assert result.returncode != 0 and "tempreature" in result.stderr
    result = run_cli("vae.explore", f"run={tiny_run}", "attribute=eleven")
    assert result.returncode != 0 and "attribute must be a class" in result.stderr and "eleven" in result.stderr
    result = run_cli("vae.explore", f"run={tmp_path / 'nowhere'}")
    assert result.returncode != 0 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_an_attribute_by_class_name_or_number_comes_from_the_validation_split(tiny_run):
    from vae.explore import ExploreArgs, attribute_source

    loaded = load_run(tiny_run)
    splits = build_data(loaded.checkpoint["config"])
    by_number = attribute_source(ExploreArgs(run=str(tiny_run), attribute="3"), splits)
    by_name = attribute_source(ExploreArgs(run=str(tiny_run), attribute=splits.class_names[3]), splits)
    legacy = attribute_source(ExploreArgs(run=str(tiny_run), attribute_class=3), splits)
    for source in (by_number, by_name, legacy):
        assert source.split == "validation" and source.images is splits.val.images
        has, title = source.groups["class_3"]
        assert torch.equal(has, splits.val.labels == 3) and title == f"class {splits.class_names[3]}"
    with pytest.raises(SystemExit):
        attribute_source(ExploreArgs(run=str(tiny_run), attribute="10"), splits)
