"""`python -m vae.generate run=<run dir> n=64`: a sheet of samples from the prior of a trained run.

Writes two PNGs: `out=` (the sheet under a title, drawn by matplotlib at 100 dpi, so upscaled) and
`<out stem>_raw.png` beside it (the same grid at the images' own resolution, one pixel per pixel and no
title: the samples themselves, to reuse or compare pixel for pixel).
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.utils import save_image

from vae.checkpoint import CheckpointError
from vae.cli import MISSING, check, parse_args
from vae.figures import sample_sheet_figure, save
from vae.runs import load_run

log = logging.getLogger("vae.generate")
SHEET_BYTES = 2 * 2**30  # what one sheet may take in memory: a bound, refused above with the estimate
SHEET_COPIES = 3


@dataclass
class GenerateArgs:
    """python -m vae.generate run=<run dir> [n=64] [seed=0] [temperature=1.0] [out=<path.png>] [checkpoint=best] [per_row=8]

    Writes out= (the sheet under a title, upscaled) and <out stem>_raw.png beside it (the same grid, not upscaled:
    one pixel per image pixel, no title). out= defaults to <run>/images/samples_n<n>_t<temperature>.png.
    """

    run: str = MISSING
    n: int = 64
    seed: int = 0
    temperature: float = 1.0  # scales eps: z = temperature * eps
    out: str | None = None  # default: <run>/images/samples_n<n>_t<temperature>.png
    checkpoint: str = "best"
    per_row: int = 8


@torch.no_grad()
def generate(model, *, n: int, seed: int, temperature: float) -> torch.Tensor:
    """n images decoded from z = temperature * eps, eps ~ N(0, I) drawn with `seed`: (n, C, H, W)."""
    return model.sample(n, temperature=temperature, generator=torch.Generator().manual_seed(seed))


def raw_path(out: Path) -> Path:
    """Where the un-upscaled grid of a sheet written to `out` goes: `<out stem>_raw.png` beside it."""
    return out.with_name(out.stem + "_raw.png")


def main(argv=None) -> Path:
    args = parse_args(GenerateArgs, argv, usage=inspect.cleandoc(GenerateArgs.__doc__))
    check(args.n >= 1, "n", "an integer >= 1", args.n)
    check(args.temperature > 0, "temperature", "a number > 0", args.temperature)
    check(args.checkpoint in ("best", "last"), "checkpoint", "best or last", args.checkpoint)
    try:
        loaded = load_run(args.run, checkpoint=args.checkpoint)
    except CheckpointError as error:
        raise SystemExit(f"error: {error}") from None
    per_image = SHEET_COPIES * 4 * math.prod(loaded.config.data.image_shape)  # float32 samples, grid, PNG buffer
    if args.n * per_image > SHEET_BYTES:
        raise SystemExit(
            f"error: n must be at most {SHEET_BYTES // per_image} for one sheet (got {args.n}: about "
            f"{args.n * per_image / 1e9:.1f} GB of memory for it); for many samples to score, use python -m vae.quality"
        )
    images = generate(loaded.model, n=args.n, seed=args.seed, temperature=args.temperature)
    out = Path(args.out) if args.out else Path(args.run) / "images" / f"samples_n{args.n}_t{args.temperature:g}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"{args.n} samples from the prior, temperature {args.temperature:g} (epoch {loaded.checkpoint['epoch']})"
    save(sample_sheet_figure(images, title=title, per_row=args.per_row), out)
    raw = raw_path(out)
    save_image(images, raw, nrow=args.per_row)
    print(f"wrote {out} (the sheet, titled) and {raw} (the same grid, not upscaled: one pixel per image pixel)")
    return out


if __name__ == "__main__":
    main()
