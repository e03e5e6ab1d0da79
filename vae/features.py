"""Feature spaces for sample quality (FID, KID, precision/recall, density/coverage): images -> (N, D) features.

Every number of `vae.quality` is named with its space ("FID (MNIST features)"); a bare "FID" is the
standard Inception one only. The spaces, in `FEATURES` (name -> loader):

- `mnist`, `fashion_mnist`: a small classifier per data set (`DigitNet`: five 3x3 conv layers with batch
  norm, global average pooling to 128 features, a linear layer to the 10 classes), trained by
  experiments/quality/train_features.py on the training split minus 10,000 images held out of its
  training (`heldout_indices`: those are the floor's real set). The features are the 128 pooled values
  before the last layer. Its weights ship in vae/feature_nets/<name>.pt (float16, under 1 MB), checked
  against the SHA-256 in vae/feature_nets/<name>.json with its test accuracy and the command that made it.
- `inception`: the pool3 features (2,048) of the TF-ported InceptionV3 that pytorch-fid and
  torch-fidelity use, through torch-fidelity's network (gray images replicated to 3 channels, resized to
  299 by its TF1-compatible bilinear resize, as those packages do). Its weights are not shipped and
  cannot be downloaded here: looked for first (`inception_weights_path`), refused with the file name,
  its hash prefix and where to put it when absent, before any image is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vae.registry import Registry

FEATURES = Registry("features")
DEFAULT_FEATURES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist"}  # a data set -> its own classifier's space
NETS = Path(__file__).resolve().parent / "feature_nets"
HELDOUT = 10_000  # training images each classifier never sees: the floor's real set
HELDOUT_SEED = 0


class FeatureError(ValueError):
    """A feature space that cannot be used here (weights absent or changed, images it does not fit)."""


def heldout_indices(num_train: int, *, seed: int = HELDOUT_SEED, count: int = HELDOUT) -> torch.Tensor:
    """The training-split indices held out of a feature classifier's training (a seeded permutation's first `count`)."""
    return torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))[:count].sort().values


class DigitNet(nn.Module):
    """The classifier of the `mnist` and `fashion_mnist` spaces: 1x28x28 -> 128 features -> 10 logits."""

    num_features = 128

    def __init__(self, channels: int = 1, classes: int = 10):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(channels, 32),
            *block(32, 32),
            nn.MaxPool2d(2),  # 14 x 14
            *block(32, 64),
            *block(64, 64),
            nn.MaxPool2d(2),  # 7 x 7
            *block(64, self.num_features),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(self.num_features, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 1, 28, 28) floats in [0, 1] -> (N, 128)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class FeatureSpace:
    """A named feature network: `__call__(images)` takes uint8 (N, C, H, W) images and returns (N, D) float64 features."""

    name: str
    label: str  # how a number in it is named: "MNIST features"
    image_shape: tuple[int, ...] | None  # what it takes; None: any size with `channels` channels
    channels: tuple[int, ...]
    num_features: int
    sha256: str
    network: nn.Module
    batch_size: int = 500

    def check(self, shape: tuple[int, ...], what: str) -> None:
        shape = tuple(shape)
        if len(shape) != 3 or shape[0] not in self.channels or (self.image_shape and shape != self.image_shape):
            wanted = "x".join(map(str, self.image_shape)) if self.image_shape else f"{self.channels} x H x W"
            raise FeatureError(
                f"features={self.name} takes {wanted} images; {what} are {'x'.join(map(str, shape))} "
                f"(name another space: {', '.join(FEATURES.names())})"
            )

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"features take uint8 images (got {images.dtype})")
        out = []
        for start in range(0, len(images), self.batch_size):
            out.append(self.network(images[start : start + self.batch_size]).double())
        return torch.cat(out) if out else torch.zeros(0, self.num_features, dtype=torch.float64)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class _Scaled(nn.Module):
    """uint8 images to the classifier's [0, 1] floats, then its features (channels_last: 1.5x faster on a CPU)."""

    def __init__(self, net: DigitNet):
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features((images.float() / 255).contiguous(memory_format=torch.channels_last))


def load_digit_net(name: str, *, nets: Path = NETS) -> tuple[DigitNet, dict]:
    """A shipped classifier and its record; FeatureError when its weights are missing or not the recorded ones."""
    weights, record_path = nets / f"{name}.pt", nets / f"{name}.json"
    if not weights.is_file() or not record_path.is_file():
        raise FeatureError(
            f"features={name}: {weights} is missing; python experiments/quality/train_features.py --data {name} makes it"
        )
    record = json.loads(record_path.read_text())
    digest = sha256_of(weights)
    if digest != record["sha256"]:
        raise FeatureError(
            f"features={name}: {weights} has SHA-256 {digest[:12]}..., not the recorded {record['sha256'][:12]}..."
        )
    net = DigitNet()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict({key: value.float() if value.is_floating_point() else value for key, value in state.items()})
    return net.eval(), record


def _digit_space(name: str, label: str) -> FeatureSpace:
    net, record = load_digit_net(name)
    return FeatureSpace(
        name=name,
        label=label,
        image_shape=(1, 28, 28),
        channels=(1,),
        num_features=DigitNet.num_features,
        sha256=record["sha256"],
        network=_Scaled(net).eval(),
    )


@FEATURES.register("mnist")
def mnist_features() -> FeatureSpace:
    return _digit_space("mnist", "MNIST features")


@FEATURES.register("fashion_mnist")
def fashion_mnist_features() -> FeatureSpace:
    return _digit_space("fashion_mnist", "Fashion-MNIST features")


# The InceptionV3 weights of pytorch-fid and torch-fidelity (the same network; their file names end in
# the first 8 hex digits of the file's SHA-256, as torch.hub checks them).
INCEPTION_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_HASH_PREFIX = "6726825d"


def inception_weights_path() -> Path | None:
    """Where the Inception weights are: $VAE_INCEPTION_WEIGHTS, else torch hub's checkpoint cache (where
    torch-fidelity and pytorch-fid keep them), else None."""
    explicit = os.environ.get("VAE_INCEPTION_WEIGHTS")
    if explicit:
        return Path(explicit)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return next((hub / name for name in INCEPTION_FILES if (hub / name).is_file()), None)


def inception_missing_message() -> str:
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"features=inception needs the InceptionV3 weights of pytorch-fid / torch-fidelity, {INCEPTION_FILES[0]} "
        f"(or {INCEPTION_FILES[1]}; SHA-256 beginning {INCEPTION_HASH_PREFIX}), which cannot be downloaded here: "
        f"put the file in {hub} or point VAE_INCEPTION_WEIGHTS at it"
    )


class _Inception(nn.Module):
    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)  # gray replicated to RGB, as pytorch-fid and torch-fidelity do
        return self.network(images.contiguous())[0]


@FEATURES.register("inception")
def inception_features() -> FeatureSpace:
    path = inception_weights_path()
    if path is None or not path.is_file():
        raise FeatureError(inception_missing_message() + (f" ({path} does not exist)" if path else ""))
    digest = sha256_of(path)
    if not digest.startswith(INCEPTION_HASH_PREFIX):
        raise FeatureError(f"features=inception: {path} has SHA-256 {digest[:12]}..., not {INCEPTION_HASH_PREFIX}...")
    try:
        torch.load(path, map_location="cpu", weights_only=True)  # plain tensors only, before torch-fidelity loads it
    except Exception as error:  # noqa: BLE001 - unreadable or unsafe: refused either way
        raise FeatureError(
            f"features=inception: {path} is not a plain state dict ({str(error).splitlines()[0]})"
        ) from None
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    return FeatureSpace(
        name="inception",
        label="Inception features",
        image_shape=None,
        channels=(1, 3),
        num_features=2048,
        sha256=digest,
        network=_Inception(network).eval(),
        batch_size=50,
    )


def space_for(data_name: str, named: str | None) -> str | None:
    """The feature space a run on `data_name` is scored in: the one named, else its data set's own, else None."""
    return named or DEFAULT_FEATURES.get(data_name)


def load_features(name: str) -> FeatureSpace:
    """The feature space registered as `name` (ConfigError listing the names for an unknown one)."""
    return FEATURES.get(name)()
