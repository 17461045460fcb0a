"""Gatys neural style transfer in plain, eager PyTorch: the reference nstjax is measured against.

This is what a user would write instead of nstjax, in the style of the official
PyTorch tutorial ("Neural Transfer Using PyTorch"): an ``nn.Module`` VGG built
from ``nn.Conv2d`` / ``nn.ReLU`` / ``nn.MaxPool2d`` (or ``nn.AvgPool2d``), the
image as the only tensor with ``requires_grad``, and ``torch.optim.LBFGS`` or
``torch.optim.Adam`` stepping it. It is *made fair* to nstjax, i.e. it computes
exactly the same objective:

* the same parameters (nstjax's ``{"conv1_1": {"kernel": HWIO, "bias"}}`` dict,
  transposed to torch's OIHW by :func:`load_params`), frozen with
  ``requires_grad_(False)`` so no weight gradients are computed; the network is
  the one the parameters describe (:func:`blocks_from_params`: 13 convolutions
  ``conv{b}_{n}`` make VGG-16, 16 make VGG-19), VGG-19 when none are given;
* the same preprocessing (``"caffe"``: RGB->BGR, x255, minus the ImageNet mean;
  ``"torch"``: ``(x - mean) / std``), padding (zero / reflect / replicate) and
  pooling (2x2 max or average, floor);
* the network truncated after the deepest layer the losses read;
* the same normalisation (see ``nstjax/losses.py``): Gram ``FᵀF / (C·h·w)``,
  style layer loss = mean of ``(G - A)²``, layers averaged with their weights
  (``Σ w_l E_l / Σ w_l``), content loss = mean ``(F - P)²`` averaged over
  content layers, total variation = mean squared vertical + horizontal
  neighbour difference of the [0, 1] image;
* the optimised variable is the RGB image in [0, 1] pixel units, unconstrained
  while optimising (nstjax clips only the output; the tutorial's in-closure
  ``clamp_`` is therefore *not* done here);
* L-BFGS: ``torch.optim.LBFGS(lr=1, history_size=10, line_search_fn="strong_wolfe")``
  (optax's ``lbfgs(memory_size=10)`` with a zoom line search is nstjax's);
  Adam: ``torch.optim.Adam(lr)`` (betas 0.9/0.999, eps 1e-8, like ``optax.adam``).
* bfloat16: ``torch.autocast(device, dtype=torch.bfloat16)`` around the network;
  Gram matrices and losses in float32 (nstjax: bf16 network, f32 losses).
* ``channels_last=True`` runs the network in NHWC memory format (often faster
  with oneDNN / cuDNN); the default is the tutorial's NCHW.

Only torch and numpy are imported: nstjax does not import this file, and this
file does not import nstjax (the CLI below borrows nstjax's image loader and
random weights when they are installed).

Usage as a library::

    from torch_reference import reference_stylize
    image, history, evals = reference_stylize(content, style, params, "torch",
                                              optimizer="lbfgs", steps=100)

As a script::

    python scripts/torch_reference.py content.png style.jpg out.png --size 256 --steps 100
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))  # VGG-19 (configuration E)
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # VGG-16 (configuration D)


def layer_names(blocks: Sequence[tuple[int, int]] = BLOCKS) -> tuple[str, ...]:
    """``conv1_1, relu1_1, …, pool1, …`` in network order for ``(channels, convolutions)`` per block."""
    return tuple(
        name
        for b, (_, count) in enumerate(blocks, 1)
        for name in (*(f"{kind}{b}_{n}" for n in range(1, count + 1) for kind in ("conv", "relu")), f"pool{b}")
    )


LAYERS = layer_names(BLOCKS)  # VGG-19's; a VGG-16 network has layer_names(VGG16_BLOCKS)


def blocks_from_params(params: Mapping[str, Mapping[str, Any]] | None) -> tuple[tuple[int, int], ...]:
    """The network the parameters describe: ``(output channels, convolutions)`` per block.

    Counts ``conv{b}_{n}`` (n = 1, 2, … without gaps) in each block ``b`` present in
    ``params``; the channels come from the biases. 13 convolutions in five blocks are
    VGG-16, 16 are VGG-19. ``None`` (or no convolutions at all) means VGG-19.
    """
    if not params or not any(k.startswith("conv") for k in params):
        return BLOCKS
    blocks = []
    b = 1
    while f"conv{b}_1" in params:
        n = 1
        while f"conv{b}_{n + 1}" in params:
            n += 1
        blocks.append((int(np.shape(params[f"conv{b}_1"]["bias"])[-1]), n))
        b += 1
    known = {f"conv{i}_{j}" for i, (_, count) in enumerate(blocks, 1) for j in range(1, count + 1)}
    extra = sorted(k for k in params if k.startswith("conv") and k not in known)
    if extra:
        raise ValueError(f"convolutions outside the consecutive VGG blocks {tuple(blocks)}: {extra}")
    return tuple(blocks)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# Defaults of nstjax's "gatys" preset.
DEFAULTS: dict[str, Any] = dict(
    content_layers=(("relu4_2", 1.0),),
    style_layers=tuple((n, 1.0) for n in GATYS_STYLE_LAYERS),
    content_weight=1.0,
    style_weight=5e3,
    tv_weight=0.0,
    pooling="avg",
    padding="zero",
    learning_rate=0.02,
    lbfgs_memory=10,
)


def load_params(params: Mapping[str, Mapping[str, Any]]) -> "OrderedDict[str, torch.Tensor]":
    """nstjax parameters (HWIO kernels) -> a torch state dict (``conv1_1.weight`` OIHW, ``.bias``)."""
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, p in params.items():
        kernel = np.asarray(p["kernel"], np.float32)  # [3, 3, Cin, Cout]
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"{name}.bias"] = torch.from_numpy(np.asarray(p["bias"], np.float32).copy())
    return state


class Preprocess(nn.Module):
    """RGB in [0, 1] (NCHW) -> what the weights expect."""

    def __init__(self, preprocessing: str):
        super().__init__()
        if preprocessing not in ("caffe", "torch"):
            raise ValueError(f"preprocessing must be 'caffe' or 'torch', got {preprocessing!r}")
        self.preprocessing = preprocessing
        if preprocessing == "caffe":
            self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))
            self.register_buffer("std", torch.ones(1, 3, 1, 1))
        else:
            self.register_buffer("mean", torch.tensor(TORCH_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(TORCH_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocessing == "caffe":
            return x.flip(1) * 255.0 - self.mean
        return (x - self.mean) / self.std


class ReferenceVGG(nn.Module):
    """VGG features as an ``nn.Sequential`` named like the literature, cut after ``last``.

    The network is the one ``params`` describe (:func:`blocks_from_params`: VGG-16 or
    VGG-19; VGG-19 with random torch initialisation when ``params`` is None).
    ``forward(x, layers)`` returns ``{name: activation}`` (NCHW) for ``layers``.
    """

    def __init__(
        self,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        pooling: str = "max",
        padding: str = "zero",
        preprocessing: str = "caffe",
        last: str = "relu5_1",
        keep: Sequence[str] = (),
    ):
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        mode = {"zero": "zeros", "reflect": "reflect", "replicate": "replicate"}[padding]
        self.preprocess = Preprocess(preprocessing)
        keep = set(keep)
        self.blocks = blocks_from_params(params)
        self.layer_names = layer_names(self.blocks)
        if last not in self.layer_names:
            raise ValueError(f"{last!r} is not a layer of the VGG with blocks {self.blocks}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = 3
        for name in self.layer_names[: self.layer_names.index(last) + 1]:
            kind, b = name[:4], int(name[4])
            if kind == "conv":
                c_out = self.blocks[b - 1][0]
                layers[name] = nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode=mode)
                c_in = c_out
            elif kind == "relu":
                # In place unless the conv output itself is wanted: saves one buffer per layer
                # (a ReLU's backward needs only its output, a conv's input gradient only weights).
                layers[name] = nn.ReLU(inplace="conv" + name[4:] not in keep)
            else:
                layers[name] = nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)
        self.net = nn.Sequential(layers)
        if params is not None:
            self.net.load_state_dict(load_params({k: v for k, v in params.items() if k in layers}))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        out = {}
        x = self.preprocess(x)
        for name, module in self.net.named_children():
            x = module(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, C], float32, divided by C·h·w."""
    b, c, h, w = features.shape
    f = features.float().reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared vertical + horizontal neighbour difference of [B, 3, H, W] images."""
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    return dy.square().mean() + dx.square().mean()


def to_tensor(image: Any, device: str | torch.device = "cpu") -> torch.Tensor:
    """[H, W, 3] or [B, H, W, 3] float array in [0, 1] -> float32 [B, 3, H, W] tensor."""
    array = np.asarray(image, np.float32)
    if array.ndim == 3:
        array = array[None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2))).to(device)


def to_numpy(image: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] tensor -> [H, W, 3] float32 array."""
    return image.detach().float().cpu()[0].permute(1, 2, 0).contiguous().numpy()


class StyleTransferLoss(nn.Module):
    """The Gatys objective for fixed content and style images: ``loss(image) -> dict``.

    Content features and style Gram matrices are computed once, here, in the same
    precision as the optimisation (``autocast_dtype``). Calling the module on a
    float32 [1, 3, H, W] image returns ``{"content", "style", "tv"}`` (weighted
    terms) and ``"total"``, all float32 scalars.
    """

    def __init__(
        self,
        vgg: ReferenceVGG,
        content: torch.Tensor,
        style: torch.Tensor,
        *,
        content_layers=DEFAULTS["content_layers"],
        style_layers=DEFAULTS["style_layers"],
        content_weight: float = DEFAULTS["content_weight"],
        style_weight: float = DEFAULTS["style_weight"],
        tv_weight: float = DEFAULTS["tv_weight"],
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        self.vgg = vgg
        self.channels_last = channels_last
        if channels_last:
            self.vgg.to(memory_format=torch.channels_last)
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        self.layers = tuple(
            sorted(set(self.content_layers) | set(self.style_layers), key=vgg.layer_names.index)
        )
        self.weights = (float(content_weight), float(style_weight), float(tv_weight))
        self.autocast_dtype = autocast_dtype
        with torch.no_grad():
            feats = self.features(content, tuple(self.content_layers))
            self.content_targets = {n: feats[n].float().detach().clone() for n in self.content_layers}
            feats = self.features(style, tuple(self.style_layers))
            self.style_targets = {n: gram_matrix(feats[n]).detach() for n in self.style_layers}

    def features(self, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is None:
            return self.vgg(image, layers)
        with torch.autocast(image.device.type, dtype=self.autocast_dtype):
            return self.vgg(image, layers)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(image, self.layers)
        cw = self.content_layers
        content = sum(
            w * (feats[n].float() - self.content_targets[n]).square().mean() for n, w in cw.items()
        ) / sum(cw.values())
        sw = self.style_layers
        style = sum(
            w * (gram_matrix(feats[n]) - self.style_targets[n]).square().mean() for n, w in sw.items()
        ) / sum(sw.values())
        tv = total_variation(image)
        c, s, t = self.weights
        terms = {"content": c * content, "style": s * style, "tv": t * tv}
        terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms


def build_loss(
    content: Any,
    style: Any,
    params: Mapping[str, Any],
    preprocessing: str,
    *,
    pooling: str = DEFAULTS["pooling"],
    padding: str = DEFAULTS["padding"],
    content_layers=DEFAULTS["content_layers"],
    style_layers=DEFAULTS["style_layers"],
    content_weight: float = DEFAULTS["content_weight"],
    style_weight: float = DEFAULTS["style_weight"],
    tv_weight: float = DEFAULTS["tv_weight"],
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    device: str = "cpu",
) -> StyleTransferLoss:
    """A :class:`StyleTransferLoss` from [H, W, 3] arrays (or NCHW tensors) and nstjax params."""
    layers = [n for n, _ in content_layers] + [n for n, _ in style_layers]
    names = layer_names(blocks_from_params(params))
    missing = [n for n in layers if n not in names]
    if missing:
        raise ValueError(f"layers {missing} are not in the network the parameters describe")
    last = max(layers, key=names.index)
    vgg = ReferenceVGG(
        params, pooling=pooling, padding=padding, preprocessing=preprocessing, last=last,
        keep=[n for n in layers if n.startswith("conv")],
    ).to(device)
    content_t = content if isinstance(content, torch.Tensor) else to_tensor(content, device)
    style_t = style if isinstance(style, torch.Tensor) else to_tensor(style, device)
    return StyleTransferLoss(
        vgg, content_t, style_t,
        content_layers=content_layers, style_layers=style_layers,
        content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
        autocast_dtype=autocast_dtype, channels_last=channels_last,
    )


def reference_losses(
    image: Any, content: Any, style: Any, params: Mapping[str, Any], preprocessing: str,
    *, grad: bool = False, **kwargs: Any,
) -> dict[str, Any]:
    """Loss terms of ``image`` ([H, W, 3] or [1, H, W, 3] in [0, 1]) as floats.

    With ``grad=True`` also ``"grad"``: d total / d image as a [1, H, W, 3] array.
    ``kwargs`` go to :func:`build_loss` (pooling, padding, layers, weights, …).
    """
    loss_fn = build_loss(content, style, params, preprocessing, **kwargs)
    x = to_tensor(image).requires_grad_(grad)
    terms = loss_fn(x)
    out: dict[str, Any] = {k: float(v.detach()) for k, v in terms.items()}
    if grad:
        terms["total"].backward()
        out["grad"] = x.grad.permute(0, 2, 3, 1).contiguous().numpy()
    return out


def make_optimizer(image: torch.Tensor, optimizer: str, *, learning_rate: float = 0.02,
                   lbfgs_memory: int = 10, max_iter: int = 20, max_eval: int | None = None):
    if optimizer == "lbfgs":
        # tolerance_grad/tolerance_change < 0: never stop early (nstjax runs every step asked).
        return torch.optim.LBFGS(
            [image], lr=1.0, max_iter=max_iter, max_eval=max_eval, history_size=lbfgs_memory,
            line_search_fn="strong_wolfe", tolerance_grad=-1.0, tolerance_change=-1.0,
        )
    if optimizer == "adam":
        return torch.optim.Adam([image], lr=learning_rate)
    raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")


def reference_stylize(
    content: Any,
    style: Any,
    params: Mapping[str, Any],
    preprocessing: str,
    *,
    optimizer: str = "lbfgs",
    steps: int = 100,
    max_evals: int | None = None,
    learning_rate: float = DEFAULTS["learning_rate"],
    lbfgs_memory: int = DEFAULTS["lbfgs_memory"],
    init: Any = "content",
    seed: int = 0,
    autocast_dtype: torch.dtype | None = None,
    device: str = "cpu",
    loss_fn: StyleTransferLoss | None = None,
    **loss_kwargs: Any,
) -> tuple[np.ndarray, list[float], int]:
    """Stylise ``content`` ([H, W, 3] in [0, 1]) with ``style``; the torch way.

    Args:
      steps: optimiser iterations (Adam: one evaluation each; L-BFGS: one or more).
      max_evals: stop once this many loss+gradient evaluations were made (L-BFGS
        may finish its current line search first, as nstjax does).
      init: ``"content"``, ``"noise"`` (uniform, seeded) or an [H, W, 3] array.
      loss_fn: a prebuilt :class:`StyleTransferLoss` (then the images, params
        and loss keyword arguments are ignored).

    Returns:
      (final image [H, W, 3] float32, unclipped; loss at every evaluation;
      number of evaluations).
    """
    if loss_fn is None:
        loss_fn = build_loss(content, style, params, preprocessing, autocast_dtype=autocast_dtype,
                             device=device, **loss_kwargs)
    if isinstance(init, str) and init == "content":
        start = np.asarray(content, np.float32)
    elif isinstance(init, str) and init == "noise":
        start = np.random.default_rng(seed).random(np.shape(content)).astype(np.float32)
    else:
        start = np.asarray(init, np.float32)
    image = to_tensor(start, device).requires_grad_(True)
    budget = max_evals if max_evals is not None else (steps if optimizer == "adam" else int(steps * 1.25) + 25)
    history: list[float] = []

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(image)["total"]
        loss.backward()
        history.append(float(loss.detach()))
        return loss

    if optimizer == "lbfgs":
        # One step() call runs up to max_iter iterations; the state carries curvature pairs.
        opt = make_optimizer(image, "lbfgs", lbfgs_memory=lbfgs_memory, max_iter=steps, max_eval=budget)
        opt.step(closure)
    else:
        opt = make_optimizer(image, "adam", learning_rate=learning_rate)
        for _ in range(min(steps, budget)):
            opt.step(closure)
    return to_numpy(image), history, len(history)


@contextlib.contextmanager
def highest_precision():
    """Pin float32 matmuls/convolutions to full precision (no TF32) for the duration."""
    old = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32,
           torch.backends.cuda.matmul.allow_tf32)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old[0])
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old[1], old[2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("content")
    parser.add_argument("style")
    parser.add_argument("output")
    parser.add_argument("--size", type=int, default=256, help="longest side of the output")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    parser.add_argument("--learning-rate", type=float, default=DEFAULTS["learning_rate"])
    parser.add_argument("--pooling", choices=("max", "avg"), default=DEFAULTS["pooling"])
    parser.add_argument("--content-weight", type=float, default=DEFAULTS["content_weight"])
    parser.add_argument("--style-weight", type=float, default=DEFAULTS["style_weight"])
    parser.add_argument("--tv-weight", type=float, default=DEFAULTS["tv_weight"])
    parser.add_argument("--weights", default="random",
                        help="an nstjax weights spec or file (needs nstjax installed; a VGG-16 file makes a "
                        "VGG-16 network); default seeded random")
    parser.add_argument("--bf16", action="store_true", help="torch.autocast bfloat16")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC memory format (often faster with oneDNN/cuDNN, above all in bfloat16); "
                        "default: the tutorial's NCHW")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from nstjax import load_weights
    from nstjax.io import images  # only for file I/O and weights; the algorithm above is torch-only

    weights = load_weights(args.weights)
    content = images.load_image(args.content)
    content = images.resize_image(content, images.fit_longest_side(content.shape[:2], args.size))
    style = images.load_image(args.style)
    style = images.resize_image(style, images.fit_longest_side(style.shape[:2], args.size))
    start = time.perf_counter()
    image, history, evals = reference_stylize(
        content, style, weights.params, weights.preprocessing,
        optimizer=args.optimizer, steps=args.steps, learning_rate=args.learning_rate,
        pooling=args.pooling, content_weight=args.content_weight, style_weight=args.style_weight,
        tv_weight=args.tv_weight, autocast_dtype=torch.bfloat16 if args.bf16 else None, device=args.device,
        channels_last=args.channels_last,
    )
    seconds = time.perf_counter() - start
    images.save_image(args.output, np.clip(image, 0.0, 1.0))
    # The last evaluated loss (that of the image before the last step): with Adam, what nstjax reports
    # for its best image after the same number of steps.
    print(f"wrote {args.output}: loss {history[0]:.6g} -> {history[-1]:.6g}, "
          f"{evals} evaluations in {seconds:.1f} s ({evals / seconds:.2f} evals/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
