"""`python -m vae.evaluate run=<run dir>`: the negative ELBO, the importance-weighted bound and active units of a run.

Written to `eval.json` (the newest evaluation) and to its own file in `evals/`, named by its settings
(`<checkpoint>_<split>_k<k>_<binarize>_<precision>_n<images>.json`), which a later evaluation with other
settings leaves alone; `vae.runs.find_eval` picks one back.

A long evaluation (k=1,000 over 10,000 images of a conv decoder is hours on a CPU) survives an
interruption: after every batch its state (the bounds so far and the generator's state) is saved to
`evals/<name>.partial.pt`, and the same command run again continues from there, to the number an
uninterrupted evaluation gives, bit for bit. The file is removed when the evaluation finishes; one
made with other settings, another checkpoint or other images is not used (and is replaced).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from vae.bounds import DECODES_PER_CALL, active_units, iwae_log_likelihood, layer_posterior_means
from vae.cli import MISSING
from vae.data import to_model_input
from vae.distributions import DiagonalGaussian
from vae.latent import mean_kl_per_dim
from vae.likelihoods import bits_per_dim_8bit, dequantize_fixed, likelihood_of
from vae.losses import layer_term_names, nats_to_bits_per_dim
from vae.metrics import EVAL_GROUP, HPARAMS_GROUP
from vae.model import VAE
from vae.objectives import ELBO
from vae.progress import progress as show_progress
from vae.runtime import exact_fp32
from vae.step import dataset_loss_terms

# The negative ELBO reported in nats: beta 1, sums, the Bernoulli likelihood (whatever the run trained on)
# unless the model's is the Gaussian of gen_loss=gaussian (`neg_elbo_objective`).
NEG_ELBO = ELBO(kl_weight=1.0, gen_loss="bce", reduction="sum")


def neg_elbo_objective(model) -> ELBO:
    """The -ELBO in nats of the model's own likelihood: NEG_ELBO, or the Gaussian's (sigma as evaluation uses it)."""
    likelihood = likelihood_of(model)
    if likelihood.name == "bernoulli":
        return NEG_ELBO
    return ELBO(kl_weight=1.0, gen_loss=likelihood.name, reduction="sum", likelihood=likelihood)


MAX_IWAE_K = 5000  # Burda et al.'s evaluation k; memory is bounded by `chunk` whatever k


@torch.no_grad()
@exact_fp32()  # reported numbers: TF32 off on a GPU (bf16 only where autocast_dtype asks for it)
def evaluate_run(
    model: VAE,
    images: torch.Tensor,
    *,
    iwae_k: int,
    batch_size: int,
    chunk: int,
    seed: int,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
    state_path: str | os.PathLike | None = None,
) -> dict:
    """The numbers of eval.json for `images` (uint8, or binarized already): ELBO terms, IWAE bound, active units.

    `progress`: a bar over the IWAE batches on a terminal, else a log line every 15 s (vae/progress.py).
    The ELBO and the bound take every stochastic layer; `active_units`, `kl_per_dim` and `mean_sigma`
    are the top layer's (`model.encode`), and a model with several layers adds each one's KL
    (`kl_nats_z1`, ...) and `active_units_per_layer` (from x up; `vae.bounds.layer_posterior_means`).
    `state_path`: where the state after each batch is saved, and continued from when it is there and
    was made by the same model, images and settings (the module docstring); removed at the end.
    """
    device = next(model.parameters()).device
    model.eval()
    key = _state_key(
        model, images, iwae_k=iwae_k, batch_size=batch_size, chunk=chunk, seed=seed, autocast_dtype=autocast_dtype
    )
    state, generator = _start_or_continue(state_path, key, model, images, batch_size=batch_size, seed=seed)
    batches = images.split(batch_size)
    likelihood = likelihood_of(model)
    bar = show_progress(total=len(batches), desc=f"IWAE k={iwae_k}", unit="batch", enabled=progress)
    if state["done"]:  # a continued evaluation: the bar starts where it stopped
        bar.update(state["done"])
    for index in range(state["done"], len(batches)):
        batch = batches[index]
        if likelihood.dequantize:  # each image's fixed noise, as the validation pass (vae.likelihoods)
            x = dequantize_fixed(batch, index * batch_size, seed=seed).to(device)
        else:
            x = to_model_input(batch).to(device)
        _add_batch(state, model, x, iwae_k=iwae_k, chunk=chunk, generator=generator, autocast_dtype=autocast_dtype)
        state["generator"] = generator.get_state()
        if state_path is not None and state["done"] < len(batches):
            _save_state(state_path, state)
        bar.update(1)
    bar.close()
    if state_path is not None:
        Path(state_path).unlink(missing_ok=True)
    return _results(state, model, images, iwae_k=iwae_k, dequantized=likelihood.dequantize)


def _start_or_continue(state_path, key: dict, model: VAE, images: torch.Tensor, *, batch_size: int, seed: int):
    """(the evaluation's state, the IWAE samples' generator): the saved ones when `state_path` holds a state
    made with `key`, else new ones, the ELBO terms computed first (they take no importance samples)."""
    state = _load_state(state_path, key)
    if state is not None:
        generator = torch.Generator()
        generator.set_state(state["generator"])
        return state, generator
    terms = dataset_loss_terms(model, images, objective=neg_elbo_objective(model), batch_size=batch_size, seed=seed)
    state = {
        "key": key,
        "terms": terms,
        "done": 0,
        "log_likelihoods": [],
        "mus": [],
        "log_vars": [],
        "layer_means": [[] for _ in model.latent_dims],
    }
    return state, torch.Generator().manual_seed(seed + 1)


def _add_batch(state: dict, model: VAE, x: torch.Tensor, *, iwae_k: int, chunk: int, generator, autocast_dtype) -> None:
    """One batch's IWAE bound, top-layer posterior and (several layers) each layer's posterior means, kept."""
    state["log_likelihoods"].append(
        iwae_log_likelihood(
            model, x, num_samples=iwae_k, chunk=chunk, generator=generator, autocast_dtype=autocast_dtype
        ).cpu()
    )
    posterior = model.encode(x)
    state["mus"].append(posterior.mean.float().cpu())
    state["log_vars"].append(posterior.log_var.float().cpu())
    if len(model.latent_dims) > 1:
        for means, mean in zip(state["layer_means"], layer_posterior_means(model, x), strict=True):
            means.append(mean.cpu())
    state["done"] += 1


def _results(state: dict, model: VAE, images: torch.Tensor, *, iwae_k: int, dequantized: bool) -> dict:
    """eval.json's numbers from a finished evaluation's state."""
    terms, num_pixels = state["terms"], math.prod(images.shape[1:])
    several = len(model.latent_dims) > 1
    to_bits = bits_per_dim_8bit if dequantized else nats_to_bits_per_dim
    iwae_nll = float(-torch.cat(state["log_likelihoods"]).double().mean())
    posterior = DiagonalGaussian(torch.cat(state["mus"]), torch.cat(state["log_vars"]))
    return {
        "neg_elbo_nats": terms["neg_elbo_nats"],
        "neg_elbo_bits_per_dim": to_bits(terms["neg_elbo_nats"], num_pixels),
        **({"decoder_sigma": terms["decoder_sigma"]} if "decoder_sigma" in terms else {}),
        "gen_nats": terms["rec_nats"],
        "kl_nats": terms["kl_nats"],
        **{name: terms[name] for name in layer_term_names(len(model.latent_dims))},
        "iwae_nll_nats": iwae_nll,
        "iwae_bits_per_dim": to_bits(iwae_nll, num_pixels),
        "iwae_k": iwae_k,
        "active_units": active_units(posterior.mean),
        **(
            {"active_units_per_layer": [active_units(torch.cat(means)) for means in state["layer_means"]]}
            if several
            else {}
        ),
        "kl_per_dim": mean_kl_per_dim(posterior).tolist(),
        "mean_sigma": float(posterior.std.mean()),
        "num_images": int(images.shape[0]),
    }


def _state_key(model, images: torch.Tensor, **settings) -> dict:
    """What an evaluation's saved state must match to be continued: settings, images and weights."""
    weights = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return {
        **{name: str(value) for name, value in settings.items()},
        "images": hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest(),
        "shape": list(images.shape),
        "weights": weights.hexdigest(),
    }


def _load_state(path, key: dict) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a file cut short by a kill mid-write is not trusted
        print(f"ignoring the evaluation state {path} ({type(error).__name__}: {error}); starting again")
        return None
    if state.get("key") != key:
        print(f"ignoring the evaluation state {path}: made by other weights, images or settings; starting again")
        return None
    print(f"continuing the evaluation saved in {path}: {state['done']} batches done")
    return state


def _save_state(path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)  # a kill mid-write leaves the previous state whole


@dataclass
class EvaluateArgs:
    """python -m vae.evaluate run=<run dir> [split=test|val] [iwae_k=1000] [batch_size=100] [max_images=0] [checkpoint=best|last|epoch_NNNN] [precision=fp32|bf16] [data_root=<dir>]"""

    run: str = MISSING
    split: str = "test"
    iwae_k: int = 1000
    batch_size: int = 100  # images per batch; each decodes min(iwae_k, chunk) samples at a time
    chunk: int = 0  # samples decoded at once per image; 0 = about 512 decodes per call (cache-sized)
    max_images: int = 0  # 0 = the whole split
    checkpoint: str = "best"
    seed: int = 0
    # fp32 (TF32 off on GPUs): every reported number. bf16 runs the networks under autocast (log p(x|z)
    # is still summed in fp32): faster on CPUs with native bf16, and biased (measured by
    # experiments/likelihood/bf16_bias.py, stated in its README); never for a number you publish.
    precision: str = "fp32"
    device: str = "auto"
    data_root: str | None = None


# long: the command's steps in their order (checks, load, continue or start, evaluate, write), each a few lines
def main(argv=None) -> dict:
    from vae.cli import check, load_run_or_exit, parse_args
    from vae.runs import eval_file_name, likelihood_note, write_eval
    from vae.runtime import tune_glibc_malloc

    tune_glibc_malloc()
    args = parse_args(EvaluateArgs, argv, usage=EvaluateArgs.__doc__)
    check(args.split in ("test", "val"), "split", "test or val", args.split)
    check(1 <= args.iwae_k <= MAX_IWAE_K, "iwae_k", f"an integer from 1 to {MAX_IWAE_K}", args.iwae_k)
    check(args.batch_size >= 1, "batch_size", "an integer >= 1", args.batch_size)
    check(args.chunk >= 0, "chunk", "an integer >= 0 (0 = auto)", args.chunk)
    check(args.precision in ("fp32", "bf16"), "precision", "fp32 or bf16", args.precision)
    check(
        args.checkpoint in ("best", "last") or re.fullmatch(r"epoch_\d{4}", args.checkpoint) is not None,
        "checkpoint",
        "best, last or a snapshot epoch_NNNN",
        args.checkpoint,
    )
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    loaded, splits = load_run_or_exit(args.run, checkpoint=args.checkpoint, device=device, data_root=args.data_root)
    config = loaded.checkpoint["config"]
    precision = args.precision
    loaded.model.to(memory_format=torch.channels_last)  # faster decoder convs on CPU and GPU alike
    images = getattr(splits, args.split).images
    if args.max_images:
        images = images[: args.max_images]
    run_dir = Path(args.run)
    state_name = eval_file_name(
        {
            "checkpoint": args.checkpoint,
            "split": args.split,
            "iwae_k": args.iwae_k,
            "binarize": config["data"]["binarize"],
            "precision": precision,
            "num_images": int(images.shape[0]),
        }
    )
    state_path = run_dir / "evals" / state_name.replace(".json", ".partial.pt")
    with stopped_in_one_line(state_path, argv):
        results = evaluate_run(
            loaded.model,
            images,
            iwae_k=args.iwae_k,
            batch_size=args.batch_size,
            chunk=args.chunk or max(1, DECODES_PER_CALL.get(torch.device(device).type, 512) // args.batch_size),
            seed=args.seed,
            autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
            state_path=state_path,
        )
    binarize = config["data"]["binarize"]
    results.update(
        binarize=binarize,
        split=args.split,
        data=config["data"]["name"],
        epoch=int(loaded.checkpoint["epoch"]),
        checkpoint=args.checkpoint,
        precision=precision,
        likelihood=likelihood_note(config["data"]["name"], binarize, likelihood_of(loaded.model).note),
    )
    latest, kept = write_eval(run_dir, results)
    if list(run_dir.glob("events.out.tfevents.*")):  # an exported run (no event files) gets the eval files only
        write_tensorboard(run_dir, results, split=args.split)
    per_layer = results.get("active_units_per_layer")
    layers = (
        f" (per layer from x up: {', '.join(f'{a}/{d}' for a, d in zip(per_layer, loaded.model.latent_dims, strict=True))})"
        if per_layer
        else ""
    )
    print(
        f"{args.split} ({results['num_images']} images, binarize={binarize}): -ELBO {results['neg_elbo_nats']:.2f} nats "
        f"({results['neg_elbo_bits_per_dim']:.4f} bits/dim), IWAE k={args.iwae_k} NLL bound {results['iwae_nll_nats']:.2f} nats, "
        f"active units {results['active_units']}/{len(results['kl_per_dim'])}{layers} ({precision}); wrote {kept} and {latest} (the newest evaluation)"
    )
    return results


@contextlib.contextmanager
def stopped_in_one_line(state_path: Path, argv):
    """SIGTERM or Ctrl-C during an evaluation: one line saying where its state is and the command that continues
    it (the state after every whole batch is already saved), and exit 130."""
    import signal
    import sys

    def stop(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except KeyboardInterrupt as interrupt:
        words = " ".join(sys.argv[1:] if argv is None else argv)
        where = (
            f"its state after the last whole batch is in {state_path}"
            if state_path.is_file()
            else "no batch had finished, so nothing was kept"
        )
        print(
            f"stopped by {interrupt.args[0] if interrupt.args else 'SIGINT'}: {where}; the same command continues it: "
            f"{sys.executable} -m vae.evaluate {words}",
            file=sys.stderr,
        )
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_tensorboard(run_dir, results: dict, *, split: str) -> None:
    """The evaluation's numbers as scalars at the checkpoint's epoch, and as HParams metric columns."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir))
    for name in ("neg_elbo_nats", "neg_elbo_bits_per_dim", "iwae_nll_nats", "active_units", "mean_sigma"):
        writer.add_scalar(f"{EVAL_GROUP}/{split}/{name}", results[name], results["epoch"])
    for layer, count in enumerate(results.get("active_units_per_layer", ()), start=1):  # several layers: z1 next to x
        writer.add_scalar(f"{EVAL_GROUP}/{split}/active_units_z{layer}", count, results["epoch"])
    for layer in range(1, len(results.get("active_units_per_layer", ())) + 1):
        writer.add_scalar(f"{EVAL_GROUP}/{split}/kl_nats_z{layer}", results[f"kl_nats_z{layer}"], results["epoch"])
    writer.add_scalar(f"{HPARAMS_GROUP}/{split}_neg_elbo_nats", results["neg_elbo_nats"], results["epoch"])
    writer.add_scalar(f"{HPARAMS_GROUP}/{split}_iwae_nll_nats", results["iwae_nll_nats"], results["epoch"])
    writer.close()


if __name__ == "__main__":
    main()
