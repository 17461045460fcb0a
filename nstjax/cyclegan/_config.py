"""CycleGAN settings: the networks, the losses, the optimiser, the run; and the networks they build."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import jax.numpy as jnp

from ..errors import NstjaxError
from ..losses.gan import GAN_LOSSES, GanLossName
from ..models.layers import UpsampleName
from ..models.patchgan import PatchGAN, patch_grid
from ..models.resnet_generator import ResnetGenerator, resnet_multiple
from ..models.unet import UnetGenerator, unet_multiple
from ..train.settings import TrainSettings

__all__ = [
    "DTYPES",
    "CycleGANConfig",
    "DtypeName",
    "GeneratorName",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "make_discriminator",
    "make_generator",
]

GeneratorName = Literal["resnet", "unet"]
DtypeName = Literal["float32", "bfloat16"]
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NstjaxError(f"{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The four networks.

    generator: ``"resnet"`` (the paper's; ``blocks`` residual blocks) or ``"unet"``
      (GDL_code's; ``depth`` downsamplings).
    ngf, ndf: channels of the generators' and the discriminators' first layers.
    upsample: ``"transpose"`` (transposed convolutions, the paper's) or ``"resize"``
      (nearest x2 + convolution, no checkerboard); default: transpose for resnet,
      resize for unet (GDL_code's).
    n_layers_d: stride-2 layers of the PatchGAN discriminators (3: 70x70 patches).
    size: side of the square training crops in pixels; ``load_size``: images are
      squashed to ``load_size x load_size`` (bicubic) before the random crop, junyanz's
      ``resize_and_crop`` (default ``size * 286 / 256``, the paper's 286 for 256).
    """

    generator: GeneratorName = "resnet"
    ngf: int = 64
    ndf: int = 64
    blocks: int = 9
    depth: int = 4
    upsample: UpsampleName | None = None
    n_layers_d: int = 3
    size: int = 256
    load_size: int | None = None

    def __post_init__(self):
        if self.generator not in ("resnet", "unet"):
            raise NstjaxError(f"unknown generator {self.generator!r} (resnet or unet)")
        if self.upsample is None:
            object.__setattr__(self, "upsample", "transpose" if self.generator == "resnet" else "resize")
        if self.upsample not in ("transpose", "resize"):
            raise NstjaxError(f"unknown upsampling {self.upsample!r} (transpose or resize)")
        for name in ("ngf", "ndf", "depth", "n_layers_d", "size"):
            _positive(name, getattr(self, name))
        if isinstance(self.blocks, bool) or not isinstance(self.blocks, int) or self.blocks < 0:
            raise NstjaxError(f"blocks must be 0 or more, got {self.blocks!r}")
        if self.load_size is None:
            object.__setattr__(self, "load_size", int(round(self.size * 286 / 256)))
        if self.load_size < self.size:
            raise NstjaxError(f"load size {self.load_size} must be at least the crop size {self.size}")
        multiple = self.multiple
        if self.size % multiple:
            raise NstjaxError(f"size must be a multiple of {multiple} for the {self.generator} generator, got {self.size}")
        if self.size < 2 * multiple or patch_grid(self.size, self.n_layers_d) < 1:
            smallest = next(s for s in range(2 * multiple, 100_000, multiple) if patch_grid(s, self.n_layers_d) >= 1)
            raise NstjaxError(f"size must be at least {smallest} px for these networks, got {self.size}")

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this for the generator (4 for resnet, ``2**depth`` for unet)."""
        return resnet_multiple() if self.generator == "resnet" else unet_multiple(self.depth)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """gan: adversarial loss (the paper: ``"lsgan"``). lambda_cycle: weight of each cycle L1 (10).
    lambda_identity: identity L1 weight, as a fraction of lambda_cycle (0.5; 0 = off).
    pool_size: fakes kept in each history pool for the discriminators (50; 0 = no pool)."""

    gan: GanLossName = "lsgan"
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50

    def __post_init__(self):
        if self.gan not in GAN_LOSSES:
            raise NstjaxError(f"unknown GAN loss {self.gan!r} ({', '.join(GAN_LOSSES)})")
        if self.lambda_cycle < 0 or self.lambda_identity < 0:
            raise NstjaxError("loss weights must be 0 or more")
        if isinstance(self.pool_size, bool) or not isinstance(self.pool_size, int) or self.pool_size < 0:
            raise NstjaxError(f"pool size must be 0 or more images, got {self.pool_size!r}")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam for both network pairs: learning rate 2e-4, beta1 0.5, beta2 0.999 (the paper's), constant
    then decaying linearly to 0 over ``TrainSettings.decay_fraction`` of the run."""

    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999

    def __post_init__(self):
        if not self.lr > 0:
            raise NstjaxError(f"learning rate must be positive, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise NstjaxError("Adam betas must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class CycleGANConfig:
    """Everything a CycleGAN run depends on. ``dtype``: compute dtype of the networks (parameters,
    losses and optimiser stay float32)."""

    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainSettings = TrainSettings(epochs=200)
    dtype: DtypeName = "float32"

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise NstjaxError(f"unknown dtype {self.dtype!r} (float32 or bfloat16)")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (what ``RUN_DIR/config.json`` stores, with ``"system": "cyclegan"``)."""
        return {"system": "cyclegan", **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CycleGANConfig:
        """The config of :meth:`to_json` data (unknown keys are an error)."""
        try:
            return cls(
                model=ModelConfig(**data.get("model", {})),
                loss=LossConfig(**data.get("loss", {})),
                optim=OptimConfig(**data.get("optim", {})),
                train=TrainSettings(**data["train"]) if "train" in data else TrainSettings(epochs=200),
                dtype=data.get("dtype", "float32"),
            )
        except TypeError as exc:
            raise NstjaxError(f"not a CycleGAN config ({exc})") from None


def make_generator(model: ModelConfig, dtype: DtypeName = "float32"):
    """The Flax generator ``model`` describes (G_AB and G_BA have the same architecture)."""
    dt = DTYPES[dtype]
    if model.generator == "resnet":
        return ResnetGenerator(ngf=model.ngf, blocks=model.blocks, upsample=model.upsample, dtype=dt)
    return UnetGenerator(ngf=model.ngf, depth=model.depth, upsample=model.upsample, dtype=dt)


def make_discriminator(model: ModelConfig, dtype: DtypeName = "float32") -> PatchGAN:
    """The PatchGAN discriminator ``model`` describes (D_A and D_B have the same architecture)."""
    return PatchGAN(ndf=model.ndf, n_layers=model.n_layers_d, norm="instance", dtype=DTYPES[dtype])
