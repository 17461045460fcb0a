"""Sketch -> photo settings: SPADE's and pix2pix's networks, losses and optimisers; the run; the networks they build."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import jax.numpy as jnp

from ..errors import NstjaxError
from ..losses.gan import GAN_LOSSES, GanLossName
from ..models.patchgan import PatchGAN, patch_grid
from ..models.pix2pix import Pix2PixUnet, pix2pix_multiple
from ..models.spade import ConvEncoder, MultiscaleDiscriminator, SPADEGenerator, encoder_layers, spade_multiple
from ..train.settings import TrainSettings

__all__ = [
    "DTYPES",
    "DtypeName",
    "InputName",
    "ModelName",
    "NormName",
    "Pix2PixConfig",
    "Sketch2PhotoConfig",
    "SpadeConfig",
    "UPSTREAM_DECAY",
    "VGG_INPUTS",
    "VGG_LAYERS",
    "make_networks",
]

ModelName = Literal["spade", "pix2pix"]
NormName = Literal["batch", "instance"]
InputName = Literal["labels", "image"]
DtypeName = Literal["float32", "bfloat16"]
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

VGG_LAYERS: tuple[tuple[str, float], ...] = (
    ("relu1_1", 1 / 32), ("relu2_1", 1 / 16), ("relu3_1", 1 / 8), ("relu4_1", 1 / 4), ("relu5_1", 1.0),
)  # fmt: skip
"""SPADE's (pix2pixHD's) perceptual loss: VGG-19 layers and their weights."""

VGG_INPUTS = ("nvlabs", "preprocessed")
"""How the perceptual loss feeds the generator's [-1, 1] images to the VGG (:func:`nstjax.sketch2photo.vgg_loss`):
``"nvlabs"`` as NVlabs' ``VGGLoss`` does (the image *is* the network's normalised input; features on
torchvision's scale whatever the weights) or ``"preprocessed"`` (nstjax before issue 28: mapped to [0, 1],
the weights' own preprocessing, features on the weights' own scale)."""

UPSTREAM_DECAY = {"spade": 0.0, "pix2pix": 0.5}
"""Share of a run with linearly decaying learning rates in the authors' defaults: NVlabs'
``--niter 50 --niter_decay 0`` (none), junyanz's ``--n_epochs 100 --n_epochs_decay 100`` (the second half)."""


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NstjaxError(f"{name} must be a positive integer, got {value!r}")


def _nonnegative(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise NstjaxError(f"{name} must be 0 or more, got {value!r}")


def _adam(beta1: float, beta2: float, *lrs: float) -> None:
    for lr in lrs:
        if not lr > 0:
            raise NstjaxError(f"learning rates must be positive, got {lr}")
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise NstjaxError("Adam betas must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class SpadeConfig:
    """SPADE (GauGAN): networks, losses (hinge GAN, feature matching, VGG, KL) and TTUR Adam.

    ngf, ndf: width of the generator's last block (its first is ``16 ngf``) and of
      the discriminators' first layer (64 each in the paper).
    n_up: x2 upsamplings in the generator (None: 5 at 128 px and up, as NVlabs'
      ``normal``, fewer below so the base grid stays at least 4x4).
    hidden: channels of each SPADE's shared convolution (128).
    norm: the SPADE layers' parameter-free norm: ``"batch"`` (the paper's
      synchronised batch norm; running averages at inference) or ``"instance"``.
    use_vae: train the image encoder too, so a photo can set the look (GauGAN's style
      filter); its KL term has weight ``lambda_kld``. z_dim: latent size (256).
    enc_size: side the encoder resizes images to (None: min(size, 256); NVlabs: 256).
    num_d, n_layers_d: discriminator scales (2) and stride-2 layers per PatchGAN (3,
      NVlabs' ``n_layers_D=4``).
    lambda_feat, lambda_vgg, lambda_kld: loss weights (10, 10, 0.05).
    vgg_layers: the perceptual loss's VGG-19 layers and weights (:data:`VGG_LAYERS`:
      relu1_1 … relu5_1 weighted 1/32 … 1); fewer layers cost less (tests use three).
    vgg_input: :data:`VGG_INPUTS`: ``"nvlabs"`` (NVlabs' scale, whatever the weights) or
      ``"preprocessed"`` (nstjax's former term: about 2x NVlabs' with torch-convention weights, 119x
      with the real Caffe-convention VGG-16; docs/sketch2photo.md).
    lr_g, lr_d, beta1, beta2: TTUR Adam (1e-4, 4e-4, 0, 0.9: NVlabs' defaults).
    """

    ngf: int = 64
    ndf: int = 64
    n_up: int | None = None
    hidden: int = 128
    norm: NormName = "batch"
    use_vae: bool = False
    z_dim: int = 256
    enc_size: int | None = None
    num_d: int = 2
    n_layers_d: int = 3
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    lambda_kld: float = 0.05
    vgg_layers: tuple[tuple[str, float], ...] = VGG_LAYERS
    vgg_input: str = "nvlabs"
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9

    def __post_init__(self):
        for name in ("ngf", "ndf", "hidden", "z_dim", "num_d", "n_layers_d"):
            _positive(name, getattr(self, name))
        if self.norm not in ("batch", "instance"):
            raise NstjaxError(f"unknown SPADE norm {self.norm!r} (batch or instance)")
        if self.n_up is not None and not (isinstance(self.n_up, int) and 1 <= self.n_up <= 7):
            raise NstjaxError(f"n_up must be 1-7 upsamplings, got {self.n_up!r}")
        for name in ("lambda_feat", "lambda_vgg", "lambda_kld"):
            _nonnegative(name, getattr(self, name))
        _adam(self.beta1, self.beta2, self.lr_g, self.lr_d)
        if self.vgg_input not in VGG_INPUTS:
            raise NstjaxError(f"unknown VGG input {self.vgg_input!r} ({' or '.join(VGG_INPUTS)})")
        try:  # tuples, also when read back from JSON lists (the config must stay hashable)
            layers = tuple((str(n), float(w)) for n, w in self.vgg_layers)
        except (TypeError, ValueError):
            raise NstjaxError(f"vgg_layers must be (layer, weight) pairs, got {self.vgg_layers!r}") from None
        from ..models.vgg import LAYERS

        unknown = [n for n, _ in layers if n not in LAYERS]
        if unknown or not layers:
            raise NstjaxError(f"unknown VGG-19 layers for the perceptual loss: {unknown or 'none given'}")
        object.__setattr__(self, "vgg_layers", layers)


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig:
    """pix2pix: U-Net generator with dropout, conditional PatchGAN, GAN + L1 loss, Adam.

    ngf, ndf: first-layer widths (64). depth: stride-2 steps of the U-Net (None:
    ``log2(size)``, a 1x1 bottleneck: 8 at 256 px, as ``unet_256``). dropout_blocks:
    decoder blocks with dropout (None: the paper's ``depth - 5``). n_layers_d: the
    PatchGAN's stride-2 layers (3: 70x70 patches).
    input: ``"labels"`` (one-hot label maps in the palette) or ``"image"`` (RGB
      images, e.g. CMP Facades' colour label pictures, as the pix2pix code trains).
    gan: ``"bce"`` (the paper code's default ``vanilla``), ``"lsgan"`` or ``"hinge"``.
    lambda_l1: weight of the L1 loss (100). lr, beta1, beta2: Adam (2e-4, 0.5, 0.999).
    """

    ngf: int = 64
    ndf: int = 64
    depth: int | None = None
    dropout_blocks: int | None = None
    n_layers_d: int = 3
    input: InputName = "labels"
    gan: GanLossName = "bce"
    lambda_l1: float = 100.0
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999

    def __post_init__(self):
        for name in ("ngf", "ndf", "n_layers_d"):
            _positive(name, getattr(self, name))
        if self.depth is not None:
            _positive("depth", self.depth)
        if self.input not in ("labels", "image"):
            raise NstjaxError(f"unknown pix2pix input {self.input!r} (labels or image)")
        if self.gan not in GAN_LOSSES:
            raise NstjaxError(f"unknown GAN loss {self.gan!r} ({', '.join(GAN_LOSSES)})")
        _nonnegative("lambda_l1", self.lambda_l1)
        _adam(self.beta1, self.beta2, self.lr)


@dataclasses.dataclass(frozen=True)
class Sketch2PhotoConfig:
    """Everything a sketch -> photo run depends on.

    model: ``"spade"`` or ``"pix2pix"`` (whose settings are ``spade`` / ``pix2pix``;
      the other's are stored but unused).
    size: side of the square training crops; ``load_size``: pairs are squashed to
      ``load_size x load_size`` (bicubic photos, nearest labels) before the random crop,
      NVlabs' ``resize_and_crop`` for ADE20K and junyanz's (default ``size * 286 / 256``).
    palette: the label maps' palette (a shipped name or a JSON path).
    dtype: compute dtype of the networks (parameters, losses, optimiser: float32).
    decay: share of the run over which the learning rates decay linearly to 0; None: the
      authors' default per model: SPADE 0 (NVlabs' ``--niter 50 --niter_decay 0``), pix2pix
      0.5 (junyanz's ``--n_epochs 100 --n_epochs_decay 100``). It sets ``train.decay_fraction``.

    ``None`` sizes of the networks (``spade.n_up``, ``spade.enc_size``,
    ``pix2pix.depth``) are resolved from ``size`` on construction.
    """

    model: ModelName = "spade"
    size: int = 256
    load_size: int | None = None
    palette: str = "landscape"
    spade: SpadeConfig = SpadeConfig()
    pix2pix: Pix2PixConfig = Pix2PixConfig()
    train: TrainSettings = TrainSettings(epochs=200)
    dtype: DtypeName = "float32"
    decay: float | None = None

    def __post_init__(self):
        if self.model not in ("spade", "pix2pix"):
            raise NstjaxError(f"unknown model {self.model!r} (spade or pix2pix)")
        if self.decay is None:
            object.__setattr__(self, "decay", UPSTREAM_DECAY[self.model])
        if self.train.decay_fraction != self.decay:
            # TrainSettings checks the range [0, 1].
            object.__setattr__(self, "train", dataclasses.replace(self.train, decay_fraction=float(self.decay)))
        if self.dtype not in DTYPES:
            raise NstjaxError(f"unknown dtype {self.dtype!r} (float32 or bfloat16)")
        _positive("size", self.size)
        if self.load_size is None:
            object.__setattr__(self, "load_size", int(round(self.size * 286 / 256)))
        if self.load_size < self.size:
            raise NstjaxError(f"load size {self.load_size} must be at least the crop size {self.size}")
        log2 = int(math.log2(self.size)) if self.size >= 1 else 0
        spade = self.spade
        if spade.n_up is None:
            spade = dataclasses.replace(spade, n_up=max(1, min(5, log2 - 2)))
        if spade.enc_size is None:
            spade = dataclasses.replace(spade, enc_size=min(256, 2 ** max(3, log2)))
        pix = self.pix2pix
        if pix.depth is None:
            pix = dataclasses.replace(pix, depth=max(2, log2))
        object.__setattr__(self, "spade", spade)
        object.__setattr__(self, "pix2pix", pix)
        if self.model == "spade":
            try:
                encoder_layers(spade.enc_size)
            except ValueError as exc:
                raise NstjaxError(str(exc)) from None
            n_layers, padding = spade.n_layers_d, 2
        else:
            n_layers, padding = pix.n_layers_d, 1
        multiple = self.multiple
        if self.size % multiple:
            raise NstjaxError(f"size must be a multiple of {multiple} for this {self.model} generator, got {self.size}")
        if patch_grid(self.size, n_layers, padding) < 1:
            raise NstjaxError(f"size {self.size} px is too small for a discriminator with {n_layers} stride-2 layers")

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this for the generator."""
        if self.model == "spade":
            return spade_multiple(self.spade.n_up)
        return pix2pix_multiple(self.pix2pix.depth)

    @property
    def input_kind(self) -> InputName:
        """What the generator takes: ``"labels"`` (one-hot label maps) or ``"image"`` (RGB)."""
        return "labels" if self.model == "spade" else self.pix2pix.input

    def replace(self, **changes: Any) -> Sketch2PhotoConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (what ``RUN_DIR/config.json`` stores, with ``"system": "sketch2photo"``)."""
        return {"system": "sketch2photo", **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sketch2PhotoConfig:
        """The config of :meth:`to_json` data (unknown keys are an error)."""
        data = dict(data)
        data.pop("system", None)
        data.pop("data", None)
        if "decay" not in data and "train" in data:  # a run from before ``decay``: keep its schedule
            data["decay"] = data["train"].get("decay_fraction", 0.5)
        if "spade" in data and "vgg_input" not in data["spade"]:  # from before ``vgg_input``: keep its loss
            data["spade"] = {**data["spade"], "vgg_input": "preprocessed"}
        try:
            return cls(
                spade=SpadeConfig(**data.pop("spade", {})),
                pix2pix=Pix2PixConfig(**data.pop("pix2pix", {})),
                train=TrainSettings(**data.pop("train")) if "train" in data else TrainSettings(epochs=200),
                **data,
            )
        except TypeError as exc:
            raise NstjaxError(f"not a sketch2photo config ({exc})") from None


def make_networks(config: Sketch2PhotoConfig, num_classes: int) -> dict[str, Any]:
    """The Flax modules of ``config``: ``{"generator", "discriminator"}`` (+ ``"encoder"`` for SPADE with the VAE).

    ``num_classes``: the palette's K (the one-hot label map's channels).
    """
    dt = DTYPES[config.dtype]
    if config.model == "spade":
        s = config.spade
        nets = {
            "generator": SPADEGenerator(ngf=s.ngf, n_up=s.n_up, hidden=s.hidden, norm=s.norm, use_vae=s.use_vae,
                                        z_dim=s.z_dim, dtype=dt),
            "discriminator": MultiscaleDiscriminator(ndf=s.ndf, n_layers=s.n_layers_d, num_d=s.num_d, dtype=dt),
        }  # fmt: skip
        if s.use_vae:
            nets["encoder"] = ConvEncoder(ngf=s.ngf, size=s.enc_size, z_dim=s.z_dim, dtype=dt)
        return nets
    p = config.pix2pix
    return {
        "generator": Pix2PixUnet(ngf=p.ngf, depth=p.depth, dropout_blocks=p.dropout_blocks, dtype=dt),
        "discriminator": PatchGAN(ndf=p.ndf, n_layers=p.n_layers_d, norm="instance", dtype=dt),
    }
