"""`python -m vae.export run=<run dir> out=<dir>`: a small run directory to share or commit.

It holds `checkpoints/last.pt` (weights and config only: no optimizer state, no RNG state, no
data path; `dtype=fp16` stores the weights in half precision), `config.json`, `metrics.json` (the learning curve), and `eval.json` and `evals/` when the run has them.
`python -m vae.evaluate run=<dir>` re-evaluates it, finding the data through `data_root=` or
`VAE_DATA_DIR`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vae.checkpoint import CheckpointError
from vae.cli import MISSING, check, parse_args
from vae.runs import EXPORT_DTYPES, export_run


@dataclass
class ExportArgs:
    """python -m vae.export run=<run dir> out=<dir> [checkpoint=last|best|epoch_NNNN] [dtype=fp32|fp16]"""

    run: str = MISSING
    out: str = MISSING
    checkpoint: str = "last"
    dtype: str = (
        "fp32"  # fp16: half the bytes; loads back into fp32 (what it changes: experiments/likelihood/README.md)
    )


def main(argv=None) -> Path:
    args = parse_args(ExportArgs, argv, usage=ExportArgs.__doc__)
    check(
        args.checkpoint in ("last", "best") or re.fullmatch(r"epoch_\d{4}", args.checkpoint) is not None,
        "checkpoint",
        "last, best or a snapshot epoch_NNNN",
        args.checkpoint,
    )
    check(args.dtype in EXPORT_DTYPES, "dtype", " or ".join(EXPORT_DTYPES), args.dtype)
    check(Path(args.out).resolve() != Path(args.run).resolve(), "out", "another directory than run", args.out)
    try:
        exported = export_run(args.run, args.out, checkpoint=args.checkpoint, dtype=args.dtype)
    except CheckpointError as error:
        raise SystemExit(f"error: {error}") from None
    size = (Path(args.out) / "checkpoints" / "last.pt").stat().st_size
    print(f"exported epoch {exported['epoch']} of {args.run} to {args.out} ({size / 1e6:.1f} MB)")
    return Path(args.out)


if __name__ == "__main__":
    main()
