"""The lecture's faces on a tiny CelebA made in the test: attribute vectors by name move the planted feature."""

from __future__ import annotations

import json

import pytest
import torch
from test_celeba import MOUTH_64, SMILING, celeba, write_celeba

from vae.build import build_data
from vae.latent import attribute_vector, decode_images, edit_latents, encode_images
from vae.runs import load_run

from conftest import run_cli

FACES = [0] * 96 + [1] * 32 + [2] * 16  # train, valid, test


def _mouth(images: torch.Tensor) -> torch.Tensor:
    """Mean intensity of the planted mouth's pixels, per image."""
    return images[:, :, MOUTH_64[0], MOUTH_64[1]].float().flatten(1).mean(1)


@pytest.mark.slow  # trains on 96 faces of 64x64 and runs vae.explore (about 40 s on 2 busy cores)
def test_editing_along_the_smiling_vector_brightens_the_mouth_and_the_opposite_darkens_it(tmp_path):
    write_celeba(tmp_path / "data", parts=FACES, flat=True)
    run_dir = tmp_path / "run"
    # A small residual net (silu: the relu conv net of TINY can lose its encoder's units on 96 images).
    model = ["model=resnet", "model.channels=[8,16,16]", "model.blocks=1", "model.hidden_dim=32"]
    result = run_cli(
        "vae.train",
        *celeba(tmp_path / "data"),
        *model,
        "gen_loss=gaussian",
        "decoder_sigma=0.05",
        "reduction=sum",
        "kl_weight=1",
        "latent_dim=4",
        "batch_size=8",
        "eval_batch_size=32",
        "num_image_samples=4",
        "grid_size=3",
        "epochs=10",
        "optim.lr=2e-3",
        f"hydra.run.dir={run_dir}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    loaded = load_run(run_dir, checkpoint="last")
    splits = build_data(loaded.checkpoint["config"])
    assert splits.attribute_names[SMILING] == "Smiling"
    val, test = splits.val, splits.test
    direction = attribute_vector(encode_images(loaded.model, val.images).mean, val.attributes[:, SMILING])
    mu = encode_images(loaded.model, test.images).mean
    ks = torch.tensor([-3.0, 0.0, 3.0])
    edited = decode_images(loaded.model, edit_latents(mu, direction, ks).view(-1, mu.shape[1]))
    mouth = _mouth(edited).view(len(mu), len(ks))  # in [0, 1]
    smiling = test.attributes[:, SMILING]
    # The reconstructions (k = 0) keep the attribute apart: the model did learn the mouth.
    assert float(mouth[smiling, 1].mean()) > float(mouth[~smiling, 1].mean()) + 0.3
    # k > 0 brightens the mouth of the faces without it; k < 0 darkens the mouth of those with it;
    # and neither moves a face the other way (a face without a mouth cannot lose it).
    assert float((mouth[~smiling, 2] - mouth[~smiling, 1]).min()) > 0.2
    assert float((mouth[smiling, 1] - mouth[smiling, 0]).min()) > 0.2
    assert float((mouth[:, 2] - mouth[:, 1]).min()) > -0.05 and float((mouth[:, 1] - mouth[:, 0]).min()) > -0.05

    result = run_cli("vae.explore", f"run={run_dir}", "attribute=Smiling", "checkpoint=last", "embedding_points=16")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("attribute_Smiling", "attribute_averages_Smiling", "interpolation", "scatter", "latent_grid"):
        assert (run_dir / "images" / f"explore_{name}.png").stat().st_size > 1000, name
    summary = json.loads((run_dir / "explore.json").read_text())
    assert summary["attribute_vector_norms"]["Smiling"] == pytest.approx(float(direction.norm()), rel=1e-4)
    # The browser explorer of the same run: 64x64 RGB faces, CelebA's attributes by name, vectors from validation.
    from vae.serve import ServeArgs, build_explorer

    explorer = build_explorer(ServeArgs(run=str(run_dir), checkpoint="last", points=16))
    assert explorer.info["image_shape"] == [3, 64, 64] and explorer.info["attribute_split"] == "validation"
    served = torch.tensor(explorer.info["attributes"]["Smiling"])
    torch.testing.assert_close(served, direction, rtol=1e-4, atol=1e-5)
    refused = run_cli("vae.explore", f"run={run_dir}", "attribute=Smiiling", "checkpoint=last")
    assert refused.returncode != 0 and "attribute" in refused.stderr and "Smiiling" in refused.stderr
    assert "Eyeglasses" in refused.stderr  # the message lists the attributes there are
