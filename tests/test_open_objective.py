"""An objective's own terms and its context (issue 43, item 1): declared once on the objective, they reach the
epoch's sums, metrics.json, TensorBoard and the sweep report with nothing else edited."""

from __future__ import annotations

import csv
import json

import torch

from vae.losses import LossTerms
from vae.objectives import ELBO, OBJECTIVES, ObjectiveContext, as_context

from conftest import TINY, compose_config, make_vae, one_layer_output


class WithExtras(ELBO):
    """The ELBO, reporting the mean squared z and the context it was called with."""

    extra_names = ("z_square", "context_step")
    seen: list[ObjectiveContext] = []

    def __call__(self, output, x, context=1.0):
        context = as_context(context)
        WithExtras.seen.append(context)
        terms = super().__call__(output, x, context)
        z = output.layers[-1].z
        extras = (("z_square", z.float().pow(2).mean()), ("context_step", torch.tensor(float(context.step))))
        return terms._replace(extras=extras)


def test_loss_terms_carry_named_extras_after_the_fixed_terms():
    output = one_layer_output(torch.zeros(2, 1, 2, 2), torch.zeros(2, 3), torch.zeros(2, 3))
    terms = WithExtras(1.0, "bce", "sum")(output, torch.zeros(2, 1, 2, 2))
    assert terms.names()[-2:] == ("z_square", "context_step") and len(terms.scalars()) == len(terms.names())
    assert WithExtras(1.0, "bce", "sum").term_names(1)[-2:] == ("z_square", "context_step")
    assert isinstance(terms, LossTerms)


def test_a_bare_number_is_still_the_kl_scale():
    model, x = make_vae(), torch.rand(4, 1, 28, 28).round()
    output = model(x, torch.zeros(4, model.latent_dim))
    elbo = ELBO(1e-3, "bce", "mean")
    half = elbo(output, x, 0.5)
    assert torch.equal(half.loss, elbo(output, x, ObjectiveContext(kl_scale=0.5)).loss)
    assert not torch.equal(half.loss, elbo(output, x).loss)


def test_an_objective_s_own_terms_reach_metrics_tensorboard_and_the_report(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vae.report import read_job, write_table
    from vae.train import train

    monkeypatch.setitem(
        OBJECTIVES,
        "elbo",
        lambda config, likelihood=None: WithExtras(
            config["kl_weight"], "bce", config["reduction"], config["free_bits"], likelihood
        ),
    )
    WithExtras.seen = []
    from omegaconf import OmegaConf

    run_dir = tmp_path / "sweep" / "0"
    config = compose_config([*TINY, "epochs=1", "data.num_train=64", "data.num_val=32"])
    train(config, run_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")  # what a sweep's job holds
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["objective_terms"] == ["z_square", "context_step"] and metrics["kl_estimator"] == "closed form"
    assert metrics["train"]["z_square"] > 0 and metrics["val"]["z_square"] > 0
    # the context: training steps counted from 0, the training split's size, the model's likelihood and prior
    training = [c for c in WithExtras.seen if c.likelihood is not None and c.step > 0]
    assert training and all(c.num_train == 64 and c.prior is not None for c in training)
    assert metrics["train"]["context_step"] > 0 and metrics["val"]["context_step"] == 0
    tags = set(EventAccumulator(str(run_dir)).Reload().Tags()["scalars"])
    assert {"train/z_square", "val/z_square", "train/context_step"} <= tags
    write_table([read_job(run_dir)], tmp_path / "sweep")
    with open(tmp_path / "sweep" / "report.csv") as f:
        header = next(csv.reader(f))
    assert "val_z_square" in header and "val_context_step" in header
    assert "val_z_square" in (tmp_path / "sweep" / "report.md").read_text()
