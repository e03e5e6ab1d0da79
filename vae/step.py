"""One training step and the validation pass: what the trainer, the benchmarks and the tests all run.

The batch is picked by index from the uint8 split on the device (`batch_input`), the loss and
its gradient are computed under the runtime's autocast (`forward_backward`), and a loss or
gradient that stops being a number stops the run by name (`check_finite`). `dataset_loss_terms`
is the validation pass: every loss term averaged over a split, with fixed noise.
"""

from __future__ import annotations

import torch

from vae.data import to_model_input
from vae.likelihoods import dequantize as dequantize_images
from vae.likelihoods import dequantize_fixed, likelihood_of
from vae.losses import TERM_NAMES, LossTerms
from vae.model import VAE
from vae.objectives import Objective, ObjectiveContext
from vae.runtime import Runtime, autocast_context, exact_fp32


class TrainingDiverged(RuntimeError):
    """A loss term or a gradient became NaN or infinite."""


def batch_input(
    images: torch.Tensor,
    index: torch.Tensor,
    *,
    runtime: Runtime,
    binarize_dynamic: bool = False,
    dequantize: bool = False,
) -> torch.Tensor:
    """The model's input for one batch: uint8 rows picked by index on the device, as floats in [0, 1];
    with `dequantize` (the Gaussian decoder's protocol, vae.likelihoods), (x + u) / 256 with fresh u."""
    rows = images[index.to(images.device, non_blocking=True)]
    x = dequantize_images(rows) if dequantize else to_model_input(rows, binarize_dynamic=binarize_dynamic)
    return x.contiguous(memory_format=torch.channels_last) if runtime.channels_last else x  # (B, C, H, W)


def forward_backward(
    forward,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    *,
    runtime: Runtime,
    objective: Objective,
    kl_scale: float = 1.0,
    eps: torch.Tensor | None = None,
    loss_scale: float = 1.0,
    context: ObjectiveContext | None = None,
) -> tuple[LossTerms, torch.Tensor]:
    """One step's forward and backward (autocast as the runtime says); returns the loss terms and the gradient norm.

    `forward` is the model (or its DDP / compiled wrapper); `objective` what the step minimises
    (vae.objectives), `kl_scale` the KL warm-up's share of its kl_weight; `eps` the reparameterization
    noise, (B, L) (drawn inside when None), or (K, B, L) when the objective takes K = objective.samples
    > 1 per image; `loss_scale` multiplies the loss before backward (DDP shards of unequal size); `context`
    what the objective reads besides (vae.objectives.ObjectiveContext; default: kl_scale alone). The
    optimizer's step is the caller's, after it has checked the terms.
    """
    if objective.samples > 1 and (eps is None or eps.dim() != 3 or eps.shape[0] != objective.samples):
        raise ValueError(f"{objective} needs its noise as eps of shape ({objective.samples}, batch, latent_dim)")
    with autocast_context(runtime.device, runtime.autocast_dtype):
        output = forward(x, eps)
    terms = objective(output, x, context if context is not None else ObjectiveContext(kl_scale=kl_scale))
    optimizer.zero_grad(set_to_none=True)
    (terms.loss * loss_scale if loss_scale != 1.0 else terms.loss).backward()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return terms, torch.nn.utils.get_total_norm(grads)


def is_finite(terms: LossTerms, grad_norm: torch.Tensor) -> bool:
    """True when the loss and the gradient norm are both numbers (waits for the device)."""
    return bool(torch.isfinite(terms.loss) & torch.isfinite(grad_norm))


def check_finite(terms: LossTerms, *, epoch: int, step: int, grad_norm: torch.Tensor | None = None) -> None:
    """Stop at once, naming the term, when the loss or the gradient stops being a number."""
    loss_ok = bool(torch.isfinite(terms.loss))
    if loss_ok and (grad_norm is None or bool(torch.isfinite(grad_norm))):
        return
    if loss_ok:
        what, bad = f"gradient norm became {float(grad_norm)}", "gradients"
    else:
        what = f"loss became {float(terms.loss)}"
        bad = ", ".join(name for name in ("gen_loss", "kl") if not bool(torch.isfinite(getattr(terms, name)))) or "loss"
    raise TrainingDiverged(
        f"{what} at epoch {epoch}, step {step} (bad term: {bad}). Lower optim.lr or kl_weight, use precision=fp32, "
        "or on_nan=skip."
    )


@torch.no_grad()
@exact_fp32()  # full fp32 where no autocast is asked for: TF32 off on a GPU
def dataset_loss_terms(
    model: VAE,
    images: torch.Tensor,
    *,
    objective: Objective,
    batch_size: int,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
    seed: int = 0,
    num_train: int | None = None,
) -> dict[str, float]:
    """Per-image averages of every loss term over `images` (uint8, as the data sets hold them), z drawn with a fixed seed.

    Under a likelihood that dequantizes (the Gaussian decoder), each image gets its fixed noise
    (`vae.likelihoods.dequantize_fixed`), and the results add `decoder_sigma`, the sigma it used.

    The loss is the training objective's at its full kl_weight: with free bits the floor is in it, as
    in training (on each batch's mean KL); for IWAE it is the k-sample bound. A model with several
    stochastic layers adds each layer's KL (`kl_nats_z1`, ...). Also `mean_sigma`: the encoder's
    sigma = exp(0.5 log_var) averaged over images and latent dims (the top layer's). The objective's own
    terms (its `extra_names`) are averaged too; `num_train`, the training split's size, is in its context.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    totals, names = None, TERM_NAMES
    sigma_total = 0.0
    samples = (objective.samples,) if objective.samples > 1 else ()
    likelihood = likelihood_of(model)
    context = ObjectiveContext(num_train=num_train, likelihood=likelihood, prior=getattr(model, "prior", None))
    for first, batch in zip(range(0, images.shape[0], batch_size), images.split(batch_size), strict=True):
        x = (dequantize_fixed(batch, first, seed=seed) if likelihood.dequantize else to_model_input(batch)).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        eps = torch.randn(*samples, x.shape[0], sum(model.latent_dims), generator=generator).to(device)
        with autocast_context(str(device), autocast_dtype):
            output = model(x, eps)
        terms = objective(output, x, context)
        batch_totals = torch.stack([t.detach().double().cpu() for t in terms.scalars()]) * x.shape[0]
        totals, names = (batch_totals, terms.names()) if totals is None else (totals + batch_totals, names)
        sigma_total += float(torch.exp(0.5 * output.log_var.float()).sum())
    model.train(was_training)
    if totals is None:
        totals = torch.zeros(len(names), dtype=torch.float64)
    results = {name: float(value) for name, value in zip(names, totals / images.shape[0], strict=True)}
    results["mean_sigma"] = sigma_total / (images.shape[0] * model.latent_dim)
    if likelihood.sigma() is not None:
        results["decoder_sigma"] = likelihood.sigma()
    return results
