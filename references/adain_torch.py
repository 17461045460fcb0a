"""AdaIN (Huang & Belongie 2017) in plain PyTorch, in the design of naoto0804/pytorch-AdaIN: nstjax's reference.

* ``calc_mean_std``: per-image, per-channel mean and std over positions, with the
  std the square root of the *unbiased* variance plus ``eps = 1e-5``;
* ``adaptive_instance_normalization(content, style)``: content features normalised
  with their own statistics, then scaled and shifted by the style's;
* ``decoder``: the mirror of VGG-19 up to relu4_1 as an ``nn.Sequential`` of
  ``ReflectionPad2d(1)`` + 3x3 ``Conv2d`` + ``ReLU`` with ``UpsamplingNearest2d(2)``
  after the first, fifth and seventh convolution's ReLU (no ReLU after the last);
* ``vgg``: the authors' *normalised* VGG-19 (``vgg_normalised.pth``: Gatys et al.'s VGG-19
  rescaled so that every filter's mean activation over a set of images is 1) layout, whose first layer is a 1x1
  convolution that maps the [0, 1] RGB input to the weights' convention, then
  reflection-padded convolutions and ``MaxPool2d(2, 2, ceil_mode=True)``, cut at
  relu4_1;
* ``Net.forward(content, style)`` returns the content loss (MSE between the
  decoded image's relu4_1 features and the AdaIN target) and the style loss (MSE
  of means plus MSE of stds at relu1_1, relu2_1, relu3_1, relu4_1, summed).

For parity, :func:`normalise_params` normalises nstjax's VGG parameters as Gatys et al. did (on the
images given: nstjax uses its calibration set), :func:`encoder_from_params` fills the encoder with
(normalised) VGG-19 parameters (HWIO -> OIHW) and sets the 1x1 convolution to nstjax's
preprocessing of those weights (``"torch"``: ``(x - mean) / std``; ``"caffe"``:
RGB -> BGR, x255, minus the mean), and :func:`decoder_from_params` loads nstjax's
decoder parameters (``conv1`` … ``conv9``). With sizes that are multiples of 8
``ceil_mode`` changes nothing, so nstjax's floor pooling gives the same features.

Only torch and numpy are imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    size = feat.size()
    assert len(size) == 4
    n, c = size[:2]
    feat_var = feat.view(n, c, -1).var(dim=2) + eps
    feat_std = feat_var.sqrt().view(n, c, 1, 1)
    feat_mean = feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1)
    return feat_mean, feat_std


def adaptive_instance_normalization(content_feat: torch.Tensor, style_feat: torch.Tensor) -> torch.Tensor:
    assert content_feat.size()[:2] == style_feat.size()[:2]
    size = content_feat.size()
    style_mean, style_std = calc_mean_std(style_feat)
    content_mean, content_std = calc_mean_std(content_feat)
    normalized = (content_feat - content_mean.expand(size)) / content_std.expand(size)
    return normalized * style_std.expand(size) + style_mean.expand(size)


def make_decoder() -> nn.Sequential:
    def conv(c_in, c_out, relu=True):
        layers = [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(c_in, c_out, (3, 3))]
        return layers + ([nn.ReLU()] if relu else [])

    return nn.Sequential(
        *conv(512, 256), nn.UpsamplingNearest2d(scale_factor=2),
        *conv(256, 256), *conv(256, 256), *conv(256, 256), *conv(256, 128), nn.UpsamplingNearest2d(scale_factor=2),
        *conv(128, 128), *conv(128, 64), nn.UpsamplingNearest2d(scale_factor=2),
        *conv(64, 64), *conv(64, 3, relu=False),
    )  # fmt: skip


def make_vgg() -> nn.Sequential:
    """The normalised VGG-19 layout up to relu4_1 (31 modules, as the reference cuts it)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, (1, 1))]
    c_in = 3
    for block, (c_out, count) in enumerate(((64, 2), (128, 2), (256, 4), (512, 1)), 1):
        for n in range(count):
            layers += [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(c_in, c_out, (3, 3)), nn.ReLU()]
            c_in = c_out
        if block < 4:
            layers.append(nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True))
    return nn.Sequential(*layers)


class Net(nn.Module):
    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential):
        super().__init__()
        enc_layers = list(encoder.children())
        self.enc_1 = nn.Sequential(*enc_layers[:4])  # relu1_1
        self.enc_2 = nn.Sequential(*enc_layers[4:11])  # relu2_1
        self.enc_3 = nn.Sequential(*enc_layers[11:18])  # relu3_1
        self.enc_4 = nn.Sequential(*enc_layers[18:31])  # relu4_1
        self.decoder = decoder
        self.mse_loss = nn.MSELoss()
        for name in ("enc_1", "enc_2", "enc_3", "enc_4"):
            for param in getattr(self, name).parameters():
                param.requires_grad = False

    def encode_with_intermediate(self, x):
        results = [x]
        for i in range(4):
            results.append(getattr(self, f"enc_{i + 1}")(results[-1]))
        return results[1:]

    def encode(self, x):
        for i in range(4):
            x = getattr(self, f"enc_{i + 1}")(x)
        return x

    def calc_content_loss(self, x, target):
        return self.mse_loss(x, target)

    def calc_style_loss(self, x, target):
        x_mean, x_std = calc_mean_std(x)
        t_mean, t_std = calc_mean_std(target)
        return self.mse_loss(x_mean, t_mean) + self.mse_loss(x_std, t_std)

    def forward(self, content, style):
        style_feats = self.encode_with_intermediate(style)
        t = adaptive_instance_normalization(self.encode(content), style_feats[-1]).detach()
        g_t = self.decoder(t)
        g_t_feats = self.encode_with_intermediate(g_t)
        loss_c = self.calc_content_loss(g_t_feats[-1], t)
        loss_s = self.calc_style_loss(g_t_feats[0], style_feats[0].detach())
        for i in range(1, 4):
            loss_s = loss_s + self.calc_style_loss(g_t_feats[i], style_feats[i].detach())
        return loss_c, loss_s


def style_transfer(vgg: nn.Sequential, decoder: nn.Sequential, content, style, alpha: float = 1.0,
                   interpolation_weights: Sequence[float] | None = None):
    """The reference's test-time transfer: ``alpha`` trade-off and style interpolation (one content, N styles)."""
    assert 0.0 <= alpha <= 1.0
    content_f = vgg(content)
    style_f = vgg(style)
    if interpolation_weights:
        base = adaptive_instance_normalization(content_f.expand(style_f.size(0), -1, -1, -1), style_f)
        feat = sum(w * base[i : i + 1] for i, w in enumerate(interpolation_weights))
        content_f = content_f[0:1]
    else:
        feat = adaptive_instance_normalization(content_f, style_f)
    feat = feat * alpha + content_f * (1 - alpha)
    return decoder(feat)


# --------------------------------------------------------------------------- nstjax parameters in


def _oihw(kernel: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(kernel, np.float32).transpose(3, 2, 0, 1).copy())


def encoder_from_params(params: Mapping[str, Mapping[str, Any]], preprocessing: str = "torch") -> nn.Sequential:
    """:func:`make_vgg` with nstjax's VGG-19 parameters and its ``preprocessing`` as the leading 1x1 conv."""
    vgg = make_vgg()
    first = vgg[0]
    with torch.no_grad():
        if preprocessing == "torch":
            std, mean = np.asarray(TORCH_STD), np.asarray(TORCH_MEAN)
            first.weight.copy_(torch.as_tensor(np.diag(1.0 / std).astype(np.float32)).view(3, 3, 1, 1))
            first.bias.copy_(torch.as_tensor((-mean / std).astype(np.float32)))
        else:  # caffe: output channel k is BGR channel k = RGB channel 2 - k, times 255, minus the mean
            weight = np.zeros((3, 3), np.float32)
            for k in range(3):
                weight[k, 2 - k] = 255.0
            first.weight.copy_(torch.as_tensor(weight).view(3, 3, 1, 1))
            first.bias.copy_(-torch.as_tensor(np.asarray(CAFFE_MEAN_BGR, np.float32)))
        convs = [m for m in list(vgg)[1:] if isinstance(m, nn.Conv2d)]
        names = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4", "conv4_1"]
        for name, conv in zip(names, convs):
            conv.weight.copy_(_oihw(params[name]["kernel"]))
            conv.bias.copy_(torch.as_tensor(np.asarray(params[name]["bias"], np.float32)))
    return vgg.eval()


def normalise_params(params: Mapping[str, Mapping[str, Any]], preprocessing: str, images: np.ndarray,
                     silent_fraction: float = 1e-3) -> dict[str, dict[str, np.ndarray]]:
    """Gatys et al.'s normalisation of nstjax VGG parameters (HWIO), layer by layer, in float64.

    The network as trained (zero padding, max pooling, ``preprocessing`` applied to ``images``
    [N, H, W, 3] RGB in [0, 1]) runs one layer at a time with the already-normalised layers
    before it; each filter's kernel and bias are divided by its mean ReLU output over the
    images and positions, so that mean becomes 1 (filters below ``silent_fraction`` of
    their layer's average mean keep their scale). Returns float32 ``{conv: {"kernel", "bias"}}``.
    """
    convs = sorted((n for n in params if n.startswith("conv")), key=lambda n: tuple(int(v) for v in n[4:].split("_")))
    x = torch.as_tensor(np.asarray(images, np.float64).transpose(0, 3, 1, 2).copy())
    if preprocessing == "torch":
        mean, std = (torch.tensor(v, dtype=x.dtype).view(1, 3, 1, 1) for v in (TORCH_MEAN, TORCH_STD))
        x = (x - mean) / std
    else:
        x = x.flip(1) * 255.0 - torch.tensor(CAFFE_MEAN_BGR, dtype=x.dtype).view(1, 3, 1, 1)
    out, block = {}, 1
    for name in convs:
        b = int(name[4:].split("_")[0])
        if b != block:
            x, block = F.max_pool2d(x, 2, 2), b
        kernel = np.asarray(params[name]["kernel"], np.float64)
        bias = np.asarray(params[name]["bias"], np.float64)
        # The layer as it now stands (its input already normalised by the previous layer's means):
        weight = torch.as_tensor(kernel.transpose(3, 2, 0, 1).copy())
        if out:
            weight = weight * torch.as_tensor(previous).view(1, -1, 1, 1)
        y = F.relu(F.conv2d(x, weight, torch.as_tensor(bias), padding=1))
        means = y.mean(dim=(0, 2, 3)).numpy()
        scale = np.where(means > silent_fraction * max(means.mean(), 0.0), means, 1.0)
        x = y / torch.as_tensor(scale).view(1, -1, 1, 1)
        out[name] = {"kernel": (weight.numpy().transpose(2, 3, 1, 0) / scale).astype(np.float32),
                     "bias": (bias / scale).astype(np.float32)}
        previous = scale
    return out


def decoder_from_params(params: Mapping[str, Mapping[str, Any]]) -> nn.Sequential:
    """:func:`make_decoder` holding nstjax's decoder parameters (``conv1`` … ``conv9``, HWIO kernels)."""
    decoder = make_decoder()
    convs = [m for m in decoder if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for i, conv in enumerate(convs, 1):
            conv.weight.copy_(_oihw(params[f"conv{i}"]["kernel"]))
            conv.bias.copy_(torch.as_tensor(np.asarray(params[f"conv{i}"]["bias"], np.float32)))
    return decoder
