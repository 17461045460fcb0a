"""A PyTorch pix2pix written the way junyanz/pytorch-CycleGAN-and-pix2pix writes it, for parity tests and benchmarks.

Not part of nstjax. It follows the authors' code structure (re-written here, not
copied) with the pix2pix model's defaults (``--norm batch``, ``--netG unet_256``,
``--gan_mode vanilla``, ``--lambda_L1 100``, Adam 2e-4 with betas (0.5, 0.999)):

* ``UnetSkipConnectionBlock``: each block is an ``nn.Sequential`` wrapped around the
  next one (``submodule``), ``LeakyReLU(0.2, inplace)`` - stride-2 4x4 ``Conv2d`` -
  norm on the way down (no LeakyReLU on the outermost, no norm on the outermost or
  the innermost), ``ReLU(inplace)`` - stride-2 4x4 ``ConvTranspose2d`` - norm on the
  way up (the outermost: a biased transposed convolution and tanh, no norm),
  ``Dropout(0.5)`` after it in the dropout blocks, and ``cat([x, block(x)], 1)``
  (skip first) on every block but the outermost. With ``BatchNorm2d`` the
  convolutions carry no bias (the authors' ``use_bias = norm is InstanceNorm2d``).
  The in-place LeakyReLU also rewrites the skip tensor ``x`` before the
  concatenation, as in the authors' code; the ReLU that the next block up applies
  to the concatenation first makes that invisible (``relu(leaky_relu(x)) = relu(x)``).
* ``UnetGenerator``: the innermost block (``8 ngf``), ``num_downs - 5`` blocks of
  ``8 ngf`` with dropout (when ``use_dropout``), then ``8 -> 4 -> 2 -> 1 ngf`` and the
  outermost block: ``num_downs`` stride-2 steps (8 for ``unet_256``, at least 5).
  One addition: ``dropout_blocks`` (default: the authors' ``num_downs - 5``) puts the
  dropout in that many blocks next to the innermost, as nstjax's option does, so
  tests can have dropout at 32 px (depth 5).
* The conditional PatchGAN (``NLayerDiscriminator``, 70x70 patches) on
  ``cat(input, image)``: :func:`patch_discriminator`. ``norm="batch"`` (the authors'
  pix2pix: ``BatchNorm2d``, middle convolutions without bias) or ``"instance"``,
  which is :class:`cyclegan_torch.NLayerDiscriminator` itself (``InstanceNorm2d``
  without affine, biases kept as the authors keep them).
* ``GANLoss`` ('vanilla': ``BCEWithLogitsLoss`` against 1/0 targets) is
  :class:`cyclegan_torch.GANLoss`; :func:`init_weights` is the authors' 'normal'
  rule (conv weights N(0, 0.02), biases 0, batch-norm weights N(1, 0.02)).
* ``Pix2Pix.optimize_parameters``: ``fake_B = G(real_A)``; the discriminator step
  first (``loss_D = 0.5 (loss_D_fake + loss_D_real)``, the fake detached), then the
  generator step with the discriminator frozen, against the *updated* discriminator,
  from the same ``fake_B``: ``loss_G = GAN(D(cat(real_A, fake_B)), real) +
  lambda_L1 * L1(fake_B, real_B)``.

Where it differs from the authors' code: no ``BaseModel`` machinery (options,
schedulers, checkpoints, visuals, multi-GPU); the networks are passed in, so a test
can build the discriminator nstjax builds. nstjax's pix2pix discriminator uses
instance norm where the authors' uses batch norm (docs/sketch2photo.md says so);
its parity tests therefore use ``norm="instance"`` here, and check the two agree at
the authors' batch size of 1 up to batch norm's affine parameters.

Needs ``references/`` on ``sys.path`` (as the tests and scripts put it) for
``cyclegan_torch``. Images NCHW float in [-1, 1].
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from cyclegan_torch import GANLoss, NLayerDiscriminator
from cyclegan_torch import init_weights as _init_convs

__all__ = [
    "GANLoss",
    "NLayerDiscriminator",
    "Pix2Pix",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "init_weights",
    "patch_discriminator",
]


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: ``x -> cat([x, up(submodule(down(x)))], 1)`` (the outermost: no concatenation).

    ``outer_nc``: channels of this level's input (and of its decoder output);
    ``inner_nc``: channels after its downsampling convolution; ``input_nc``: the
    outermost's input channels (default ``outer_nc``).
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm_layer=nn.BatchNorm2d,
                 use_dropout: bool = False):
        super().__init__()
        self.outermost, self.innermost = outermost, innermost
        use_bias = norm_layer is nn.InstanceNorm2d
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True), upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [nn.LeakyReLU(0.2, True), downconv, norm_layer(inner_nc), submodule,
                      nn.ReLU(True), upconv, norm_layer(outer_nc)]  # fmt: skip
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """The authors' ``UnetGenerator``: [B, input_nc, H, W] -> [B, output_nc, H, W] in (-1, 1).

    H and W must be multiples of ``2 ** num_downs``; ``num_downs >= 5``.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm_layer=nn.BatchNorm2d, use_dropout: bool = True, dropout_blocks: int | None = None):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"the authors' U-Net has at least 5 downsamplings, got {num_downs}")
        drops = num_downs - 5 if dropout_blocks is None else dropout_blocks
        if not 0 <= drops <= num_downs - 2:
            raise ValueError(f"dropout_blocks must be 0-{num_downs - 2}, got {drops}")
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm_layer=norm_layer)
        mults = [8] * (num_downs - 5) + [4, 2, 1]  # outer_nc / ngf of the levels, from the innermost out
        for j, mult in enumerate(mults, 1):
            block = UnetSkipConnectionBlock(ngf * mult, ngf * min(2 * mult, 8), submodule=block,
                                            norm_layer=norm_layer, use_dropout=use_dropout and j <= drops)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True,
                                             norm_layer=norm_layer)

    def forward(self, x):
        return self.model(x)

    def levels(self) -> list[UnetSkipConnectionBlock]:
        """The blocks, outermost first (nstjax's level ``i`` is ``levels()[i]``)."""
        out = [self.model]
        while not out[-1].innermost:
            out.append(next(m for m in out[-1].model if isinstance(m, UnetSkipConnectionBlock)))
        return out


def patch_discriminator(input_nc: int, ndf: int = 64, n_layers: int = 3,
                        norm: Literal["batch", "instance"] = "batch") -> NLayerDiscriminator:
    """The authors' ``NLayerDiscriminator`` with ``norm_layer`` batch norm (pix2pix's) or instance norm (CycleGAN's).

    Built as :class:`cyclegan_torch.NLayerDiscriminator`; for ``"batch"`` each
    ``InstanceNorm2d`` becomes an affine ``BatchNorm2d`` and the convolution before
    it loses its bias (the authors' ``use_bias`` rule), the rest is the same network.
    """
    d = NLayerDiscriminator(input_nc, ndf, n_layers)
    if norm == "instance":
        return d
    if norm != "batch":
        raise ValueError(f"unknown norm {norm!r} (batch or instance)")
    layers = list(d.model)
    for i, m in enumerate(layers):
        if isinstance(m, nn.InstanceNorm2d):
            layers[i] = nn.BatchNorm2d(m.num_features)
            layers[i - 1].register_parameter("bias", None)
    d.model = nn.Sequential(*layers)
    return d


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The authors' 'normal' initialisation: conv weights N(0, gain), biases 0; batch-norm weights N(1, gain), biases 0."""
    _init_convs(net, gain)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.constant_(m.bias, 0.0)
    return net


class Pix2Pix:
    """The authors' ``Pix2PixModel`` training logic on given networks (``netD`` sees ``input_nc + output_nc`` channels)."""

    def __init__(self, netG: nn.Module, netD: nn.Module, *, lr: float = 2e-4, beta1: float = 0.5,
                 lambda_L1: float = 100.0, gan_mode: str = "vanilla"):
        self.netG, self.netD = netG.train(), netD.train()
        self.lambda_L1 = lambda_L1
        self.criterionGAN = GANLoss(gan_mode)
        self.criterionL1 = nn.L1Loss()
        self.optimizer_G = torch.optim.Adam(netG.parameters(), lr=lr, betas=(beta1, 0.999))
        self.optimizer_D = torch.optim.Adam(netD.parameters(), lr=lr, betas=(beta1, 0.999))

    def set_input(self, real_A, real_B):
        self.real_A, self.real_B = real_A, real_B

    def forward(self):
        self.fake_B = self.netG(self.real_A)

    def backward_D(self):
        pred_fake = self.netD(torch.cat((self.real_A, self.fake_B), 1).detach())
        self.loss_D_fake = self.criterionGAN(pred_fake, False)
        pred_real = self.netD(torch.cat((self.real_A, self.real_B), 1))
        self.loss_D_real = self.criterionGAN(pred_real, True)
        self.loss_D = (self.loss_D_fake + self.loss_D_real) * 0.5
        self.loss_D.backward()

    def backward_G(self):
        pred_fake = self.netD(torch.cat((self.real_A, self.fake_B), 1))
        self.loss_G_GAN = self.criterionGAN(pred_fake, True)
        self.loss_G_L1 = self.criterionL1(self.fake_B, self.real_B) * self.lambda_L1
        self.loss_G = self.loss_G_GAN + self.loss_G_L1
        self.loss_G.backward()

    def set_requires_grad(self, net: nn.Module, requires_grad: bool):
        for p in net.parameters():
            p.requires_grad = requires_grad

    def optimize_parameters(self):
        self.forward()
        self.set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad()
        self.backward_D()
        self.optimizer_D.step()
        self.set_requires_grad(self.netD, False)  # D is frozen for G's step, which sees the updated D
        self.optimizer_G.zero_grad()
        self.backward_G()
        self.optimizer_G.step()

    def losses(self) -> dict[str, float]:
        """The authors' ``loss_names``: G_GAN, G_L1, D_real, D_fake (D_real / D_fake before the 0.5)."""
        return {n: float(getattr(self, f"loss_{n}").detach()) for n in ("G_GAN", "G_L1", "D_real", "D_fake")}
