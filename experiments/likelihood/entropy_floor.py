"""The entropy floor of the gray-level -ELBO: sum_p H(x_p) per image, in nats.

BCE against a gray pixel value x is E_{b ~ Bernoulli(x)}[-log p(b|z)], at least H(x), the
binarization's own entropy, whatever the model. Summed over pixels, it is the part of a
gray-level -ELBO no model can remove.

    python experiments/likelihood/entropy_floor.py data_root=<MNIST dir> [data=mnist|fashion_mnist]
"""

from __future__ import annotations

import sys

import torch

from vae.data import load_idx


def entropy_floor(images: torch.Tensor) -> torch.Tensor:
    """sum_p H(Bernoulli(x_p)) per image, in nats, for uint8 images: (N,)."""
    x = images.double() / 255
    return -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x)).flatten(1).sum(1)


def main(argv: list[str]) -> None:
    args = dict(word.split("=", 1) for word in argv)
    train, test = load_idx(args.get("data", "mnist"), args["data_root"], download=False)
    for name, split in (("train", train), ("test", test)):
        floor = entropy_floor(split.images)
        print(f"{name}: {len(floor)} images, entropy floor {floor.mean():.2f} nats per image (sd {floor.std():.2f})")


if __name__ == "__main__":
    main(sys.argv[1:])
