"""Sample-quality metrics between two sets of features: FID, KID, precision/recall, density/coverage.

`a` is the set scored (samples, reconstructions), `b` the reference (real images). All take (N, D)
features (vae/features.py) and return plain floats:

- FID: the Fréchet distance between Gaussian fits of a and b (torchmetrics' FrechetInceptionDistance,
  given the features through a pass-through module that declares their size, so it never builds an
  Inception network). Biased upwards at small N: report N.
- KID: the unbiased MMD^2 with the polynomial kernel (x.y / D + 1)^3, mean and standard deviation over
  `subsets` random subsets of size min(1000, N) (torchmetrics' KernelInceptionDistance, seeded).
- precision and recall (Kynkäänniemi et al. 2019, k = 3): the share of a inside the union of b's k-NN
  balls, and of b inside a's.
- density and coverage (Naeem et al. 2020, k = 5): how many of b's k-NN balls hold each point of a (over
  k, averaged), and the share of b's balls that hold at least one point of a.
The k-NN balls follow the authors' code (prdc): radius = distance to the k-th nearest other point,
strictly inside counts. Distances are Euclidean, computed in chunks (memory bounded by `chunk` rows).
"""

from __future__ import annotations

import torch
from torch import nn

PR_K = 3
DC_K = 5
KID_SUBSET = 1000
KID_SUBSETS = 100


class QualityError(ValueError):
    """Sets a metric cannot score (too few images for it); the message names the metric and the count."""


class _Given(nn.Module):
    """torchmetrics' 'feature extractor' for features already computed: passes them through, declares D."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def check_counts(n_a: int, n_b: int, dim: int) -> None:
    """Refuse, naming the metric, sets too small for it: FID needs more images than feature dimensions in
    each set (else a covariance is singular), KID at least 2, the k-NN metrics more than DC_K."""
    for what, n in (("a", n_a), ("b", n_b)):
        if n <= dim:
            raise QualityError(
                f"FID needs more images than feature dimensions: {what} has {n}, the features have {dim} "
                "(a covariance of fewer points is singular); use more images"
            )
        if n <= DC_K:
            raise QualityError(f"density and coverage (k = {DC_K}) need more than {DC_K} images: {what} has {n}")


def fid(a: torch.Tensor, b: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Given(a.shape[1]), normalize=False)
    metric.update(b.double(), real=True)
    metric.update(a.double(), real=False)
    return float(metric.compute())


def kid(a: torch.Tensor, b: torch.Tensor, *, subsets: int = KID_SUBSETS, seed: int = 0) -> tuple[float, float, int]:
    """(mean, standard deviation over subsets, subset size min(KID_SUBSET, N))."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(KID_SUBSET, len(a), len(b))
    if size < 2:
        raise QualityError(f"KID needs at least 2 images in each set (got {len(a)} and {len(b)})")
    metric = KernelInceptionDistance(feature=_Given(a.shape[1]), subsets=subsets, subset_size=size, normalize=False)
    metric.update(b.double(), real=True)
    metric.update(a.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), size


def _neighbour_radii(points: torch.Tensor, ks: tuple[int, ...], chunk: int) -> dict[int, torch.Tensor]:
    """For each k of `ks`: the distance from each point to its k-th nearest other point (the (k+1)-th smallest,
    itself included), from one pass over the pairwise distances."""
    deepest = max(ks) + 1
    nearest = []
    for start in range(0, len(points), chunk):
        distances = torch.cdist(points[start : start + chunk], points)
        nearest.append(distances.topk(deepest, dim=1, largest=False, sorted=True).values)
    nearest = torch.cat(nearest)
    return {k: nearest[:, k] for k in ks}


def prdc(
    a: torch.Tensor, b: torch.Tensor, *, pr_k: int = PR_K, dc_k: int = DC_K, chunk: int = 1024
) -> dict[str, float]:
    """Precision and recall at k = pr_k, density and coverage at k = dc_k, of a (scored) against b (reference)."""
    a, b = a.double(), b.double()
    radii_b = _neighbour_radii(b, (pr_k, dc_k), chunk)
    radii_b_pr, radii_b_dc, radii_a_pr = radii_b[pr_k], radii_b[dc_k], _neighbour_radii(a, (pr_k,), chunk)[pr_k]
    inside_pr = torch.zeros(len(a), dtype=torch.bool)  # a_j in some ball of b (precision)
    recalled = torch.zeros(len(b), dtype=torch.bool)  # b_i in some ball of a (recall)
    balls_holding = torch.zeros(len(a), dtype=torch.float64)  # density's count per a_j
    nearest_a = torch.full((len(b),), float("inf"), dtype=torch.float64)  # coverage: each b_i's nearest a
    for start in range(0, len(a), chunk):
        d = torch.cdist(a[start : start + chunk], b)  # (chunk of a, all of b)
        inside_pr[start : start + chunk] = (d < radii_b_pr).any(dim=1)
        recalled |= (d < radii_a_pr[start : start + chunk, None]).any(dim=0)
        balls_holding[start : start + chunk] = (d < radii_b_dc).sum(dim=1).double()
        nearest_a = torch.minimum(nearest_a, d.min(dim=0).values)
    return {
        "precision": inside_pr.double().mean().item(),
        "recall": recalled.double().mean().item(),
        "density": (balls_holding / dc_k).mean().item(),
        "coverage": (nearest_a < radii_b_dc).double().mean().item(),
    }


def score(a: torch.Tensor, b: torch.Tensor, *, seed: int = 0) -> dict:
    """Every metric of a (scored) against b (reference): fid, kid_mean, kid_std, precision, recall, density,
    coverage, with n_a, n_b and the KID subset size."""
    check_counts(len(a), len(b), a.shape[1])
    kid_mean, kid_std, subset = kid(a, b, seed=seed)
    return {
        "fid": fid(a, b),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "kid_subset_size": subset,
        **prdc(a, b),
        "n_a": len(a),
        "n_b": len(b),
    }
