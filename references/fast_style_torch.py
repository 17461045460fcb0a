"""Johnson et al.'s feed-forward style network and its perceptual loss, in plain PyTorch: nstjax's reference.

Written in the design of the PyTorch example ``fast_neural_style`` (pytorch/examples):

* ``TransformerNet``: ``ConvLayer`` = ``ReflectionPad2d(k // 2)`` + ``Conv2d(stride)``;
  ``InstanceNorm2d(affine=True)``; five ``ResidualBlock``s; ``UpsampleConvLayer`` =
  nearest ``Upsample(scale_factor=2)`` + reflection padding + convolution; no
  activation on the last layer. Pixels in and out are 0–255 (the example
  multiplies ``ToTensor()``'s [0, 1] by 255).
* The loss: ``normalize_batch`` (``/255``, then ImageNet mean/std), VGG features of
  the output and of the input, content loss ``MSE`` at one layer times
  ``content_weight``, style loss the ``MSE`` of Gram matrices
  ``FᵀF / (C·h·w)`` *summed* over the style layers times ``style_weight``.

Changed from the example, for parity with nstjax (and said here so nobody is misled):

* **VGG-19 instead of VGG-16**, built from nstjax's parameter dict (HWIO kernels
  transposed to OIHW by :func:`vgg_from_params`), with nstjax's layer choice:
  content at ``relu2_2`` (the paper's layer), style at ``relu1_1 … relu5_1``
  (Gatys et al.'s, nstjax's default) instead of the example's
  ``relu1_2, relu2_2, relu3_3, relu4_3`` of VGG-16. The Gram normalisation is the
  example's, which is also nstjax's (divide by C·h·w).
* An optional total-variation term (the paper's; the example has none), computed
  as nstjax does: mean squared neighbour differences of the [0, 1] image.

nstjax averages the style loss over its layers and keeps the weights apart, so
``style_sum = len(style_layers) * nstjax_style`` for equal layer weights; the
parity tests compare the unweighted terms this way.

Only torch and numpy are imported. :func:`transformer_from_state` loads a state
dict of NumPy arrays or tensors (nstjax's ``params_to_torch`` gives one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
VGG_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
CONTENT_LAYER = "relu2_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


# --------------------------------------------------------------------------- the transformer network


class ConvLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour upsampling, then a reflection-padded convolution (no checkerboard artefacts)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, upsample: int | None = None):
        super().__init__()
        self.upsample = upsample
        if upsample:
            self.upsample_layer = nn.Upsample(mode="nearest", scale_factor=upsample)
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = self.upsample_layer(x)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = ConvLayer(3, 32, kernel_size=9, stride=1)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ConvLayer(32, 64, kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ConvLayer(64, 128, kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1 = ResidualBlock(128)
        self.res2 = ResidualBlock(128)
        self.res3 = ResidualBlock(128)
        self.res4 = ResidualBlock(128)
        self.res5 = ResidualBlock(128)
        self.deconv1 = UpsampleConvLayer(128, 64, kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = UpsampleConvLayer(64, 32, kernel_size=3, stride=1, upsample=2)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        """``x``: [B, 3, H, W] pixels in 0–255 -> [B, 3, H, W] in (roughly) 0–255, unclipped."""
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def transformer_from_state(state: Mapping[str, Any]) -> TransformerNet:
    """A :class:`TransformerNet` holding ``state`` (arrays or tensors), in eval mode."""
    net = TransformerNet()
    net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
    return net.eval()


# --------------------------------------------------------------------------- the loss network


class Vgg19(nn.Module):
    """VGG-19 features (zero padding, max pooling) returning the requested ReLU activations."""

    def __init__(self, layers: Sequence[str]):
        super().__init__()
        self.wanted = tuple(layers)
        self.names: list[str] = []
        modules: list[nn.Module] = []
        c_in = 3
        deepest = max(self._index(n) for n in self.wanted)
        for b, (c_out, count) in enumerate(VGG_BLOCKS, 1):
            for n in range(1, count + 1):
                modules += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
                self.names += [f"conv{b}_{n}", f"relu{b}_{n}"]
                c_in = c_out
            modules.append(nn.MaxPool2d(2, 2))
            self.names.append(f"pool{b}")
        self.features = nn.Sequential(*modules[: deepest + 1])
        self.names = self.names[: deepest + 1]

    def _index(self, name: str) -> int:
        names = []
        for b, (_, count) in enumerate(VGG_BLOCKS, 1):
            names += [f"{kind}{b}_{n}" for n in range(1, count + 1) for kind in ("conv", "relu")] + [f"pool{b}"]
        return names.index(name)

    def forward(self, x) -> dict[str, torch.Tensor]:
        out = {}
        for name, module in zip(self.names, self.features):
            x = module(x)
            if name in self.wanted:
                out[name] = x
        return out


def vgg_from_params(params: Mapping[str, Mapping[str, Any]], layers: Sequence[str]) -> Vgg19:
    """:class:`Vgg19` with nstjax's parameters (``{"conv1_1": {"kernel": HWIO, "bias"}}``), frozen."""
    vgg = Vgg19(layers)
    convs = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
    conv_names = [n for n in vgg.names if n.startswith("conv")]
    with torch.no_grad():
        for name, conv in zip(conv_names, convs):
            conv.weight.copy_(torch.as_tensor(np.asarray(params[name]["kernel"]).transpose(3, 2, 0, 1)))
            conv.bias.copy_(torch.as_tensor(np.asarray(params[name]["bias"])))
    return vgg.eval().requires_grad_(False)


def normalize_batch(batch: torch.Tensor, preprocessing: str = "torch") -> torch.Tensor:
    """0–255 RGB [B, 3, H, W] -> the VGG weights' input (the example's ``normalize_batch`` for "torch")."""
    if preprocessing == "torch":
        mean = batch.new_tensor(TORCH_MEAN).view(-1, 1, 1)
        std = batch.new_tensor(TORCH_STD).view(-1, 1, 1)
        return (batch / 255.0 - mean) / std
    return batch.flip(1) - batch.new_tensor(CAFFE_MEAN_BGR).view(-1, 1, 1)


def gram_matrix(y: torch.Tensor) -> torch.Tensor:
    b, ch, h, w = y.size()
    features = y.view(b, ch, w * h)
    return features.bmm(features.transpose(1, 2)) / (ch * h * w)


def total_variation(images01: torch.Tensor) -> torch.Tensor:
    """nstjax's TV of [0, 1] images [B, 3, H, W], averaged over the batch."""
    dy = images01[:, :, 1:, :] - images01[:, :, :-1, :]
    dx = images01[:, :, :, 1:] - images01[:, :, :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()


def perceptual_loss(
    transformer: TransformerNet,
    vgg: Vgg19,
    x: torch.Tensor,
    gram_style: Sequence[torch.Tensor],
    *,
    content_weight: float = 1e5,
    style_weight: float = 1e10,
    tv_weight: float = 0.0,
    content_layer: str = CONTENT_LAYER,
    style_layers: Sequence[str] = STYLE_LAYERS,
    preprocessing: str = "torch",
) -> dict[str, torch.Tensor]:
    """One training step's loss, as the example's ``train`` computes it, with the terms apart.

    Args:
      x: content batch [B, 3, H, W] in 0–255.
      gram_style: Gram matrices [1 or B, C, C] of the style image, one per style layer.

    Returns:
      ``{"content", "style_sum", "tv", "total"}``: the unweighted content MSE, the
      unweighted sum over layers of the Gram MSEs, the TV term and the weighted total.
    """
    mse = nn.MSELoss()
    y = transformer(x)
    features_y = vgg(normalize_batch(y, preprocessing))
    features_x = vgg(normalize_batch(x, preprocessing))
    content = mse(features_y[content_layer], features_x[content_layer])
    style_sum = 0.0
    for layer, gm_s in zip(style_layers, gram_style):
        gm_y = gram_matrix(features_y[layer])
        style_sum = style_sum + mse(gm_y, gm_s.expand_as(gm_y))
    tv = total_variation(y / 255.0)
    total = content_weight * content + style_weight * style_sum + tv_weight * tv
    return {"content": content, "style_sum": style_sum, "tv": tv, "total": total}


def style_grams(vgg: Vgg19, style: torch.Tensor, style_layers: Sequence[str] = STYLE_LAYERS,
                preprocessing: str = "torch") -> list[torch.Tensor]:
    """Gram matrices of a style image [1, 3, H, W] in 0–255 at the style layers."""
    with torch.no_grad():
        feats = vgg(normalize_batch(style, preprocessing))
        return [gram_matrix(feats[layer]) for layer in style_layers]


def train_steps(
    transformer: TransformerNet, vgg: Vgg19, batches: Sequence[torch.Tensor], gram_style: Sequence[torch.Tensor], *,
    lr: float = 1e-3, **loss_options: Any,
) -> list[float]:
    """Adam steps over ``batches`` (0–255 contents), the example's loop; returns each step's total loss."""
    optimizer = torch.optim.Adam(transformer.parameters(), lr)
    transformer.train()
    losses = []
    for x in batches:
        optimizer.zero_grad()
        loss = perceptual_loss(transformer, vgg, x, gram_style, **loss_options)["total"]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
