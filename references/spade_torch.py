"""A PyTorch SPADE (GauGAN) written the way NVlabs/SPADE writes it, for parity tests and benchmarks.

Not part of nstjax; imports only torch and numpy. It follows the structure of
NVlabs' code (re-written here, not copied):

* ``SPADE``: ``param_free_norm`` (``BatchNorm2d`` / ``InstanceNorm2d`` without
  affine), ``mlp_shared`` (3x3 conv + ReLU, ``nhidden`` channels), ``mlp_gamma`` /
  ``mlp_beta``; ``normalized * (1 + gamma) + beta`` with the label map resized by
  ``F.interpolate(mode="nearest")``.
* ``SPADEResnetBlock``: ``fin`` / ``fout`` / ``fmiddle = min(fin, fout)``, a learned
  shortcut when ``fin != fout``, ``spectral_norm`` on ``conv_0``, ``conv_1``,
  ``conv_s``; LeakyReLU(0.2).
* ``SPADEGenerator``: ``fc`` (a conv of the downsampled label map, or a Linear of
  ``z`` with the VAE), ``head_0``, ``G_middle_0/1``, ``up_0 … up_3`` (``up_4`` for
  ``most``), ``nn.Upsample(scale_factor=2)`` between them, ``conv_img`` + tanh. The
  number of upsamplings ``n_up`` is free as in nstjax (5 = NVlabs' ``normal``; fewer
  leave out the first upsampling places).
* ``ConvEncoder``: stride-2 3x3 ``spectralinstance`` convolutions (bias removed
  before the instance norm, as ``get_nonspade_norm_layer`` does) down to 4x4,
  ``fc_mu``, ``fc_var``; images resized bilinearly to ``size`` first.
* ``NLayerDiscriminator`` (``n_layers_D=4``, kernel 4, padding 2, ``spectralinstance``
  middle layers, intermediate features returned) and ``MultiscaleDiscriminator``
  (``num_D`` of them, 3x3/2 average pooling with ``count_include_pad=False``).
* ``GANLoss('hinge')`` with ``for_discriminator``, feature matching (``lambda_feat /
  num_D`` per layer), ``VGGLoss`` (relu1_1 … relu5_1, weights 1/32 … 1, L1) and
  ``KLDLoss``; ``Pix2PixModel``-style ``SPADETrainer`` with TTUR Adam,
  ``run_generator_one_step`` then ``run_discriminator_one_step`` (a new fake from the
  updated generator).

The perceptual loss is NVlabs': the [-1, 1] images go straight into a VGG in torchvision's
convention (``VGG19``). Two conveniences, shared with nstjax: that VGG takes its parameters
from a dict (nstjax's HWIO layout; Caffe-convention weights are first converted to
torchvision's convention and scale by weight surgery, see ``VGG19``), and the
reparameterisation noise ``eps`` can be passed in, so a test can give both sides the same draw.

Images NCHW in [-1, 1]; label maps one-hot NCHW.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

__all__ = [
    "ConvEncoder",
    "GANLoss",
    "KLDLoss",
    "MultiscaleDiscriminator",
    "NLayerDiscriminator",
    "SPADE",
    "SPADEGenerator",
    "SPADEResnetBlock",
    "SPADETrainer",
    "VGG19",
    "VGGLoss",
    "torchvision_convention",
    "feature_matching",
    "init_weights",
]


def _param_free_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"unknown param-free norm {kind!r}")


class SPADE(nn.Module):
    def __init__(self, norm_nc: int, label_nc: int, nhidden: int = 128, param_free_norm: str = "batch", ks: int = 3):
        super().__init__()
        self.param_free_norm = _param_free_norm(param_free_norm, norm_nc)
        pw = ks // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, nhidden, kernel_size=ks, padding=pw), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(nhidden, norm_nc, kernel_size=ks, padding=pw)
        self.mlp_beta = nn.Conv2d(nhidden, norm_nc, kernel_size=ks, padding=pw)

    def forward(self, x, segmap):
        normalized = self.param_free_norm(x)
        segmap = F.interpolate(segmap, size=x.size()[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin: int, fout: int, label_nc: int, nhidden: int = 128, param_free_norm: str = "batch",
                 spectral: bool = True):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = nn.Conv2d(fin, fmiddle, kernel_size=3, padding=1)
        self.conv_1 = nn.Conv2d(fmiddle, fout, kernel_size=3, padding=1)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, kernel_size=1, bias=False)
        if spectral:
            self.conv_0 = spectral_norm(self.conv_0)
            self.conv_1 = spectral_norm(self.conv_1)
            if self.learned_shortcut:
                self.conv_s = spectral_norm(self.conv_s)
        self.norm_0 = SPADE(fin, label_nc, nhidden, param_free_norm)
        self.norm_1 = SPADE(fmiddle, label_nc, nhidden, param_free_norm)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc, nhidden, param_free_norm)

    def forward(self, x, seg):
        x_s = self.shortcut(x, seg)
        dx = self.conv_0(self.actvn(self.norm_0(x, seg)))
        dx = self.conv_1(self.actvn(self.norm_1(dx, seg)))
        return x_s + dx

    def shortcut(self, x, seg):
        return self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x

    @staticmethod
    def actvn(x):
        return F.leaky_relu(x, 2e-1)


class SPADEGenerator(nn.Module):
    def __init__(self, label_nc: int, ngf: int = 64, n_up: int = 5, crop_size: int = 256, nhidden: int = 128,
                 param_free_norm: str = "batch", use_vae: bool = False, z_dim: int = 256):
        super().__init__()
        nf = ngf
        self.ngf, self.n_up, self.use_vae, self.z_dim = ngf, n_up, use_vae, z_dim
        self.sw = self.sh = crop_size // 2**n_up
        normal = [0, 2, 3, 4, 5]
        chosen = set(normal) | ({1} if n_up >= 6 else set()) | ({6} if n_up == 7 else set()) if n_up >= 5 else set(
            normal[5 - n_up :]
        )
        self.places = [i in chosen for i in range(7)]
        if use_vae:
            self.fc = nn.Linear(z_dim, 16 * nf * self.sw * self.sh)
        else:
            self.fc = nn.Conv2d(label_nc, 16 * nf, 3, padding=1)
        block = dict(label_nc=label_nc, nhidden=nhidden, param_free_norm=param_free_norm)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, **block)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, **block)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, **block)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, **block)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, **block)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, **block)
        self.up_3 = SPADEResnetBlock(2 * nf, 1 * nf, **block)
        final_nc = nf
        if n_up == 7:
            self.up_4 = SPADEResnetBlock(1 * nf, nf // 2, **block)
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, seg, z=None):
        if self.use_vae:
            if z is None:
                z = torch.randn(seg.size(0), self.z_dim, dtype=torch.float32, device=seg.device)
            x = self.fc(z).view(-1, 16 * self.ngf, self.sh, self.sw)
        else:
            x = self.fc(F.interpolate(seg, size=(self.sh, self.sw)))

        def up(x, place):
            return self.up(x) if self.places[place] else x

        x = up(self.head_0(x, seg), 0)
        x = up(self.G_middle_0(x, seg), 1)
        x = self.G_middle_1(x, seg)
        for i, block in enumerate((self.up_0, self.up_1, self.up_2, self.up_3)):
            x = block(up(x, 2 + i), seg)
        if self.n_up == 7:
            x = self.up_4(up(x, 6), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 2e-1)))


def _spectral_instance(conv: nn.Conv2d) -> nn.Module:
    """``get_nonspade_norm_layer(opt, 'spectralinstance')``: spectral norm, bias removed, InstanceNorm2d."""
    conv = spectral_norm(conv)
    if getattr(conv, "bias", None) is not None:
        delattr(conv, "bias")
        conv.register_parameter("bias", None)
    return nn.Sequential(conv, nn.InstanceNorm2d(conv.out_channels, affine=False))


class ConvEncoder(nn.Module):
    def __init__(self, ngf: int = 64, size: int = 256, z_dim: int = 256):
        super().__init__()
        self.size = size
        n = int(round(np.log2(size / 4)))
        layers, c_in = [], 3
        for i in range(n):
            width = ngf * min(2**i, 8)
            layers.append(_spectral_instance(nn.Conv2d(c_in, width, 3, stride=2, padding=1)))
            c_in = width
        self.layers = nn.ModuleList(layers)
        self.fc_mu = nn.Linear(c_in * 16, z_dim)
        self.fc_var = nn.Linear(c_in * 16, z_dim)
        self.actvn = nn.LeakyReLU(0.2, False)

    def forward(self, x):
        if x.size(2) != self.size or x.size(3) != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        for layer in self.layers:
            x = self.actvn(layer(x))
        x = x.view(x.size(0), -1)
        return self.fc_mu(x), self.fc_var(x)


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc: int, ndf: int = 64, n_layers_D: int = 4):
        super().__init__()
        kw, padw = 4, 2
        nf = ndf
        sequence = [[nn.Conv2d(input_nc, nf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2, False)]]
        for n in range(1, n_layers_D):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers_D - 1 else 2
            conv = nn.Conv2d(nf_prev, nf, kernel_size=kw, stride=stride, padding=padw)
            sequence += [[_spectral_instance(conv), nn.LeakyReLU(0.2, False)]]
        sequence += [[nn.Conv2d(nf, 1, kernel_size=kw, stride=1, padding=padw)]]
        for n, layers in enumerate(sequence):
            self.add_module(f"model{n}", nn.Sequential(*layers))

    def forward(self, x):
        results = [x]
        for sub in self.children():
            results.append(sub(results[-1]))
        return results[1:]  # the intermediate features, then the logits


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, input_nc: int, ndf: int = 64, num_D: int = 2, n_layers_D: int = 4):
        super().__init__()
        for i in range(num_D):
            self.add_module(f"discriminator_{i}", NLayerDiscriminator(input_nc, ndf, n_layers_D))

    @staticmethod
    def downsample(x):
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=[1, 1], count_include_pad=False)

    def forward(self, x):
        result = []
        for d in self.children():
            result.append(d(x))
            x = self.downsample(x)
        return result


class GANLoss(nn.Module):
    """The hinge GAN loss as NVlabs writes it (the only mode SPADE trains with by default)."""

    def loss(self, x, target_is_real: bool, for_discriminator: bool):
        if for_discriminator:
            zero = torch.zeros_like(x)
            minval = torch.min(x - 1, zero) if target_is_real else torch.min(-x - 1, zero)
            return -torch.mean(minval)
        assert target_is_real, "the generator's hinge loss aims to be real"
        return -torch.mean(x)

    def __call__(self, inputs, target_is_real: bool, for_discriminator: bool = True):
        loss = 0
        for pred in inputs:
            if isinstance(pred, list):
                pred = pred[-1]
            loss_tensor = self.loss(pred, target_is_real, for_discriminator)
            bs = 1 if len(loss_tensor.size()) == 0 else loss_tensor.size(0)
            loss = loss + torch.mean(loss_tensor.view(bs, -1), dim=1)
        return loss / len(inputs)


def feature_matching(pred_fake, pred_real, lambda_feat: float = 10.0):
    """NVlabs' GAN_Feat loss: L1 of every intermediate feature, real detached, ``lambda_feat / num_D``."""
    num_d = len(pred_fake)
    loss = torch.zeros(1)
    for i in range(num_d):
        for j in range(len(pred_fake[i]) - 1):  # the last output is the prediction
            loss = loss + F.l1_loss(pred_fake[i][j], pred_real[i][j].detach()) * lambda_feat / num_d
    return loss


TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def torchvision_convention(params: Mapping[str, Mapping[str, Any]], preprocessing: str) -> dict[str, dict[str, np.ndarray]]:
    """nstjax VGG parameters (HWIO) as a network in torchvision's convention and on its scale.

    ``"torch"``: as they are. ``"caffe"`` (BGR, 0-255, minus the mean): conv1_1 is rewritten to read
    the torchvision-normalised RGB input ``x`` (the image ``u = mean + std * x`` in 0-255 BGR minus
    the Caffe mean is ``255 * std * x + (255 * mean - caffe_mean)``: the factor goes into the kernel,
    the offset into the bias), then conv1_1's kernel and every bias are divided by
    ``lam = 255 * mean(std)``: a ReLU network with max pooling is positively homogeneous in its input
    and biases, so every feature is divided by ``lam``. At the image border the converted conv1_1
    adds the offset for padded pixels where the Caffe network sees 0 (at most 0.5 of 255): the
    only difference from the Caffe network's features divided by ``lam``.
    """
    convs = [n for n in params if n.startswith("conv")]
    convs.sort(key=lambda n: tuple(int(v) for v in n[4:].split("_")))
    out = {n: {"kernel": np.asarray(params[n]["kernel"], np.float64), "bias": np.asarray(params[n]["bias"], np.float64)}
           for n in convs}  # fmt: skip
    if preprocessing == "torch":
        return {n: {k: v.astype(np.float32) for k, v in layer.items()} for n, layer in out.items()}
    assert preprocessing == "caffe", preprocessing
    std, mean, caffe_mean_rgb = np.asarray(TORCH_STD), np.asarray(TORCH_MEAN), np.asarray(CAFFE_MEAN_BGR)[::-1]
    lam = 255.0 * std.mean()
    first = out[convs[0]]
    kernel_rgb = first["kernel"][:, :, ::-1, :]  # input channels BGR -> RGB
    first["bias"] = first["bias"] + np.einsum("hwco,c->o", kernel_rgb, 255.0 * mean - caffe_mean_rgb)
    first["kernel"] = kernel_rgb * (255.0 * std)[None, None, :, None] / lam
    for name in convs:
        out[name]["bias"] = out[name]["bias"] / lam
    return {n: {k: v.astype(np.float32) for k, v in layer.items()} for n, layer in out.items()}


class VGG19(nn.Module):
    """NVlabs' ``VGG19``: the relu1_1 … relu5_1 slices of a VGG in torchvision's convention, fed the image as it is.

    Built from nstjax's parameter dict (``{"conv1_1": {"kernel": HWIO, "bias"}}``, VGG-19 or VGG-16)
    through :func:`torchvision_convention` for weights of ``preprocessing``. ``forward`` takes the
    generator's [-1, 1] images, as NVlabs' ``VGGLoss`` passes them (no normalisation).
    """

    def __init__(self, params: Mapping[str, Mapping[str, Any]], preprocessing: str = "torch"):
        super().__init__()
        params = torchvision_convention(params, preprocessing)
        blocks: dict[int, list[str]] = {}
        for name in params:
            blocks.setdefault(int(name[4:].split("_")[0]), []).append(name)
        # Slice k ends at relu{k}_1: block k-1's remaining convolutions, its pooling, then conv{k}_1.
        slices, current = [], ["conv1_1"]
        for b in range(2, 6):
            slices.append(current)
            current = [n for n in blocks[b - 1] if not n.endswith("_1")] + ["pool", f"conv{b}_1"]
        slices.append(current)
        self.slices = nn.ModuleList()
        for names in slices:
            layers: list[nn.Module] = []
            for name in names:
                if name == "pool":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    continue
                kernel = params[name]["kernel"]
                conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], 3, padding=1)
                conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
                conv.bias.data = torch.from_numpy(params[name]["bias"].copy())
                layers += [conv, nn.ReLU()]
            self.slices.append(nn.Sequential(*layers))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out


class VGGLoss(nn.Module):
    def __init__(self, vgg: VGG19, weights: Sequence[float] = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)):
        super().__init__()
        self.vgg = vgg
        self.criterion = nn.L1Loss()
        self.weights = list(weights)

    def forward(self, x, y):
        x_vgg, y_vgg = self.vgg(x), self.vgg(y)  # NVlabs: [-1, 1] images straight in
        loss = 0
        for i, w in enumerate(self.weights):
            if w:
                loss = loss + w * self.criterion(x_vgg[i], y_vgg[i].detach())
        return loss


class KLDLoss(nn.Module):
    def forward(self, mu, logvar):
        return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """NVlabs' ``init_weights('xavier', 0.02)``: Glorot-normal convolutions and linears, zero biases."""
    for m in net.modules():
        name = m.__class__.__name__
        if name.find("BatchNorm2d") != -1:
            if getattr(m, "weight", None) is not None:
                nn.init.normal_(m.weight.data, 1.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)
        elif hasattr(m, "weight") and (name.find("Conv") != -1 or name.find("Linear") != -1):
            nn.init.xavier_normal_(m.weight.data, gain=gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)
    return net


class SPADETrainer:
    """NVlabs' ``Pix2PixModel`` + ``Pix2PixTrainer`` for one batch: G (+E) step, then D step.

    ``eps``: the reparameterisation noise of each step's encoding ([B, z_dim]); None
    draws it with ``torch.randn`` as NVlabs does.
    """

    def __init__(self, netG: SPADEGenerator, netD: MultiscaleDiscriminator, netE: ConvEncoder | None = None,
                 vgg: VGG19 | None = None, *, lambda_feat: float = 10.0, lambda_vgg: float = 10.0,
                 lambda_kld: float = 0.05, vgg_weights: Sequence[float] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0),
                 lr: float = 2e-4, beta1: float = 0.0, beta2: float = 0.9):
        self.netG, self.netD, self.netE = netG, netD, netE
        self.criterionGAN = GANLoss()
        self.criterionVGG = VGGLoss(vgg, vgg_weights) if vgg is not None and lambda_vgg > 0 else None
        self.KLDLoss = KLDLoss()
        self.lambda_feat, self.lambda_vgg, self.lambda_kld = lambda_feat, lambda_vgg, lambda_kld
        g_params = list(netG.parameters()) + (list(netE.parameters()) if netE is not None else [])
        # TTUR: G at lr / 2, D at lr * 2.
        self.optimizer_G = torch.optim.Adam(g_params, lr=lr / 2, betas=(beta1, beta2))
        self.optimizer_D = torch.optim.Adam(netD.parameters(), lr=lr * 2, betas=(beta1, beta2))

    def encode_z(self, real, eps=None):
        mu, logvar = self.netE(real)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std) if eps is None else eps
        return eps.mul(std) + mu, mu, logvar

    def generate_fake(self, seg, real, eps=None, compute_kld_loss=False):
        z = kld = None
        if self.netE is not None:
            z, mu, logvar = self.encode_z(real, eps)
            if compute_kld_loss:
                kld = self.KLDLoss(mu, logvar) * self.lambda_kld
        return self.netG(seg, z=z), kld

    def discriminate(self, seg, fake, real):
        fake_and_real = torch.cat([torch.cat([seg, fake], dim=1), torch.cat([seg, real], dim=1)], dim=0)
        out = self.netD(fake_and_real)
        pred_fake = [[t[: t.size(0) // 2] for t in p] for p in out]
        pred_real = [[t[t.size(0) // 2 :] for t in p] for p in out]
        return pred_fake, pred_real

    def compute_generator_loss(self, seg, real, eps=None):
        losses = {}
        fake, kld = self.generate_fake(seg, real, eps, compute_kld_loss=True)
        if kld is not None:
            losses["KLD"] = kld
        pred_fake, pred_real = self.discriminate(seg, fake, real)
        losses["GAN"] = self.criterionGAN(pred_fake, True, for_discriminator=False)
        losses["GAN_Feat"] = feature_matching(pred_fake, pred_real, self.lambda_feat)
        if self.criterionVGG is not None:
            losses["VGG"] = self.criterionVGG(fake, real) * self.lambda_vgg
        return losses, fake

    def compute_discriminator_loss(self, seg, real, eps=None):
        with torch.no_grad():
            fake, _ = self.generate_fake(seg, real, eps)
            fake = fake.detach()
            fake.requires_grad_()
        pred_fake, pred_real = self.discriminate(seg, fake, real)
        return {"D_Fake": self.criterionGAN(pred_fake, False, for_discriminator=True),
                "D_real": self.criterionGAN(pred_real, True, for_discriminator=True)}

    def run_generator_one_step(self, seg, real, eps=None):
        self.optimizer_G.zero_grad()
        losses, fake = self.compute_generator_loss(seg, real, eps)
        g_loss = sum(losses.values()).mean()
        g_loss.backward()
        self.optimizer_G.step()
        self.g_losses, self.generated = losses, fake

    def run_discriminator_one_step(self, seg, real, eps=None):
        self.optimizer_D.zero_grad()
        losses = self.compute_discriminator_loss(seg, real, eps)
        d_loss = sum(losses.values()).mean()
        d_loss.backward()
        self.optimizer_D.step()
        self.d_losses = losses

    def run_one_step(self, seg, real, eps_g=None, eps_d=None):
        self.run_generator_one_step(seg, real, eps_g)
        self.run_discriminator_one_step(seg, real, eps_d)
