"""Why the lecture's network, ported with PyTorch's default init, sits at the mean image.

Measures, on a batch of real MNIST, how much of each encoder layer's activation varies with
the input image (the rest is the same for every image: bias), at initialisation, for
`model.init=torch` and `model.init=glorot`; then trains each for a few hundred steps and
prints the loss. Usage:

    python experiments/lecture/init_trap.py --data-root <MNIST dir> [--steps 400]
"""

from __future__ import annotations

import argparse
import json

import torch

from vae.build import build_model
from vae.config import compose_dict
from vae.data import load_idx, to_model_input
from vae.objectives import ELBO

LECTURE_LOSS = ELBO(kl_weight=1e-3, gen_loss="bce", reduction="mean")


def input_dependence(model, x: torch.Tensor) -> list[tuple[str, float, float]]:
    """Per layer: (name, std across images / RMS of the activation, RMS of the activation)."""
    rows = []
    hooks = []

    def record(name):
        def hook(_module, _inputs, output):
            flat = output.detach().flatten(1)  # (B, features)
            rms = flat.pow(2).mean().sqrt().item()
            between = flat.std(0).pow(2).mean().sqrt().item()  # how much the images differ here
            rows.append((name, between / max(rms, 1e-12), rms))

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.ReLU, torch.nn.Linear)) and name.startswith("encoder"):
            hooks.append(module.register_forward_hook(record(name)))
    with torch.no_grad():
        model.encode(x)
    for hook in hooks:
        hook.remove()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="./data")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    train, test = load_idx("mnist", args.data_root, download=False)
    x_train = to_model_input(train.images)
    x_probe = to_model_input(test.images[:512])
    mean_image = x_train.mean(0, keepdim=True).clamp(1e-6, 1 - 1e-6)
    mean_image_bce = torch.nn.functional.binary_cross_entropy(mean_image.expand_as(x_probe), x_probe).item()
    report = {"mean_image_bce": mean_image_bce, "inits": {}}
    print(f"BCE of the mean image (what a decoder that ignores z reaches): {mean_image_bce:.4f}")
    for init in ("torch", "glorot"):
        torch.manual_seed(args.seed)
        model = build_model(compose_dict(["experiment=lecture", f"model.init={init}"]))
        rows = input_dependence(model, x_probe)
        print(f"\ninit={init}: share of each encoder activation that depends on the image")
        for name, share, rms in rows:
            print(f"  {name:22s} image-dependent share {share:6.3f}   rms {rms:.4g}")
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        generator = torch.Generator().manual_seed(args.seed)
        curve = []
        for step in range(1, args.steps + 1):
            batch = x_train[torch.randint(0, len(x_train), (128,), generator=generator)]
            output = model(batch)
            terms = LECTURE_LOSS(output, batch)
            optimizer.zero_grad()
            terms.loss.backward()
            optimizer.step()
            if step % 50 == 0:
                with torch.no_grad():
                    probe = model(x_probe)
                    probe_terms = LECTURE_LOSS(probe, x_probe)
                curve.append(
                    {
                        "step": step,
                        "loss": probe_terms.loss.item(),
                        "mu_std": probe.mu.std(0).mean().item(),
                        "mean_sigma": torch.exp(0.5 * probe.log_var).mean().item(),
                    }
                )
                print(
                    f"  step {step:4d}  loss {curve[-1]['loss']:.4f}  std of mu over images {curve[-1]['mu_std']:.3f}  mean sigma {curve[-1]['mean_sigma']:.3f}"
                )
        report["inits"][init] = {"layers": rows, "curve": curve}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
