"""A PyTorch CycleGAN written the way junyanz/pytorch-CycleGAN-and-pix2pix writes it, for parity tests and benchmarks.

Not part of nstjax. It follows the authors' code structure (re-written here, not
copied): ``ResnetGenerator`` of ``nn.Sequential`` layers with ``ReflectionPad2d``
and ``InstanceNorm2d(affine=False)`` (biases kept before the norms, as the authors
do), ``NLayerDiscriminator`` (the 70x70 PatchGAN), ``GANLoss`` ('lsgan': MSE
against 1/0 targets, 'vanilla': BCE with logits), ``ImagePool``, ``init_weights``
(N(0, 0.02), zero biases) and ``CycleGAN.optimize_parameters``: forward, the
generators' step with the discriminators frozen, then the discriminators' step
on pooled fakes with ``backward_D_basic``'s 0.5 factor. Both generators share
one Adam, both discriminators another.

Naming: the authors' ``netG_A`` maps A to B, ``netG_B`` maps B to A, and
``netD_A`` judges domain **B** images (``G_A``'s outputs), ``netD_B`` domain A.
nstjax calls them ``g_ab``, ``g_ba``, ``d_b``, ``d_a``.

Also here, for the U-Net parity: ``GDLUnetGenerator``, the U-Net generator of
David Foster's GDL_code CycleGAN (Keras) in PyTorch: four stride-2 4x4
convolutions (each + instance norm + ReLU), three (nearest x2 upsampling + 4x4
convolution + instance norm + ReLU + concatenation with the matching encoder
output), a last nearest x2 and a 4x4 convolution with tanh. Keras ``'same'``
padding is reproduced exactly (for a 4x4 stride-1 kernel: 1 pixel before, 2
after). Keras's default initialiser there is Glorot, not N(0, 0.02); the parity
tests copy parameters, so it does not matter.

Images are NCHW float in [-1, 1].
"""

from __future__ import annotations

import itertools
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CycleGAN",
    "GANLoss",
    "GDLUnetGenerator",
    "ImagePool",
    "NLayerDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "init_weights",
]


def _instance_norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            _instance_norm(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            _instance_norm(dim),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d2ngf, d4ngf, R4ngf x n_blocks, u2ngf, ungf, c7s1-output_nc, tanh.

    ``upsample='transpose'``: ``ConvTranspose2d(3, stride=2, padding=1, output_padding=1)`` (the
    authors'); ``'resize'``: nearest x2, ``ReflectionPad2d(1)``, 3x3 convolution.
    """

    def __init__(self, input_nc=3, output_nc=3, ngf=64, n_blocks=9, upsample="transpose"):
        super().__init__()
        use_bias = True  # the authors' rule for InstanceNorm2d
        model = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
            _instance_norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            model += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                _instance_norm(ngf * mult * 2),
                nn.ReLU(True),
            ]
        for _ in range(n_blocks):
            model += [ResnetBlock(ngf * 4)]
        for i in range(2):
            mult = 2 ** (2 - i)
            if upsample == "transpose":
                model += [
                    nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1,
                                       output_padding=1, bias=use_bias)
                ]
            else:
                model += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.ReflectionPad2d(1),
                    nn.Conv2d(ngf * mult, ngf * mult // 2, kernel_size=3, padding=0, bias=use_bias),
                ]
            model += [_instance_norm(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """The PatchGAN: C64 (no norm) - C128 - C256 (stride 2) - C512 (stride 1) - 1 channel, 4x4 kernels."""

    def __init__(self, input_nc=3, ndf=64, n_layers=3):
        super().__init__()
        use_bias = True
        kw, padw = 4, 1
        sequence = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
            sequence += [
                nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=2, padding=padw, bias=use_bias),
                _instance_norm(ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]
        nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
        sequence += [
            nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=1, padding=padw, bias=use_bias),
            _instance_norm(ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw),
        ]
        self.model = nn.Sequential(*sequence)

    def forward(self, x):
        return self.model(x)


def _same_pad(x, kernel: int, stride: int):
    """Keras/TensorFlow ``padding='same'``: total padding split with the extra pixel after."""
    h, w = x.shape[2:]
    pads = []
    for size in (w, h):  # F.pad takes the last dimension first
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _SameConv(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=0)

    def forward(self, x):
        return self.conv(_same_pad(x, self.kernel, self.stride))


class GDLUnetGenerator(nn.Module):
    """GDL_code's CycleGAN U-Net (``build_generator_unet``) in PyTorch, ``depth`` = 4 downsamplings."""

    def __init__(self, input_nc=3, output_nc=3, ngf=32, depth=4, kernel=4):
        super().__init__()
        widths = [ngf * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        c = input_nc
        for w in widths:
            self.down.append(_SameConv(c, w, kernel, 2))
            c = w
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(_SameConv(c, w, kernel, 1))
            c = w * 2  # after concatenation with the encoder's output of the same width
        self.head = _SameConv(c, output_nc, kernel, 1)

    def forward(self, x):
        skips = []
        for conv in self.down:
            x = F.relu(F.instance_norm(conv(x)))
            skips.append(x)
        for conv, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = F.relu(F.instance_norm(conv(x)))
            x = torch.cat([x, skip], 1)
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return torch.tanh(self.head(x))


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The authors' 'normal' initialisation: conv weights N(0, gain), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)
    return net


class GANLoss(nn.Module):
    """'lsgan': MSE against a tensor of 1s (real) or 0s (fake); 'vanilla': BCE with logits."""

    def __init__(self, gan_mode="lsgan"):
        super().__init__()
        self.register_buffer("real_label", torch.tensor(1.0))
        self.register_buffer("fake_label", torch.tensor(0.0))
        self.loss = nn.MSELoss() if gan_mode == "lsgan" else nn.BCEWithLogitsLoss()

    def __call__(self, prediction, target_is_real: bool):
        target = (self.real_label if target_is_real else self.fake_label).expand_as(prediction)
        return self.loss(prediction, target)


class ImagePool:
    """The history of generated images (Shrivastava et al. 2017): returns a mix of new and older fakes.

    While fewer than ``pool_size`` images are stored, each new image is stored and
    returned. Then, with probability 1/2, a random stored image is returned and
    replaced by the new one; otherwise the new image is returned.
    """

    def __init__(self, pool_size: int, rng: random.Random | None = None):
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []
        self.rng = rng or random.Random(0)

    def query(self, images):
        if self.pool_size == 0:
            return images
        out = []
        for image in images:
            image = image.detach().unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image)
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                j = self.rng.randint(0, self.pool_size - 1)
                out.append(self.images[j].clone())
                self.images[j] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


class CycleGAN:
    """The authors' ``CycleGANModel`` training logic on given networks (ResNet or U-Net generators)."""

    def __init__(self, netG_A, netG_B, netD_A, netD_B, *, lr=2e-4, beta1=0.5, lambda_A=10.0, lambda_B=10.0,
                 lambda_identity=0.5, pool_size=50, gan_mode="lsgan", seed=0):
        self.netG_A, self.netG_B, self.netD_A, self.netD_B = netG_A, netG_B, netD_A, netD_B
        self.lambda_A, self.lambda_B, self.lambda_idt = lambda_A, lambda_B, lambda_identity
        self.fake_A_pool = ImagePool(pool_size, random.Random(seed))
        self.fake_B_pool = ImagePool(pool_size, random.Random(seed + 1))
        self.criterionGAN = GANLoss(gan_mode)
        self.criterionCycle = nn.L1Loss()
        self.criterionIdt = nn.L1Loss()
        self.optimizer_G = torch.optim.Adam(itertools.chain(netG_A.parameters(), netG_B.parameters()), lr=lr,
                                            betas=(beta1, 0.999))
        self.optimizer_D = torch.optim.Adam(itertools.chain(netD_A.parameters(), netD_B.parameters()), lr=lr,
                                            betas=(beta1, 0.999))

    def set_input(self, real_A, real_B):
        self.real_A, self.real_B = real_A, real_B

    def forward(self):
        self.fake_B = self.netG_A(self.real_A)
        self.rec_A = self.netG_B(self.fake_B)
        self.fake_A = self.netG_B(self.real_B)
        self.rec_B = self.netG_A(self.fake_A)

    def backward_D_basic(self, netD, real, fake):
        loss_D_real = self.criterionGAN(netD(real), True)
        loss_D_fake = self.criterionGAN(netD(fake.detach()), False)
        loss_D = (loss_D_real + loss_D_fake) * 0.5
        loss_D.backward()
        return loss_D

    def backward_D_A(self):
        fake_B = self.fake_B_pool.query(self.fake_B)
        self.loss_D_A = self.backward_D_basic(self.netD_A, self.real_B, fake_B)

    def backward_D_B(self):
        fake_A = self.fake_A_pool.query(self.fake_A)
        self.loss_D_B = self.backward_D_basic(self.netD_B, self.real_A, fake_A)

    def backward_G(self):
        if self.lambda_idt > 0:
            self.idt_A = self.netG_A(self.real_B)
            self.loss_idt_A = self.criterionIdt(self.idt_A, self.real_B) * self.lambda_B * self.lambda_idt
            self.idt_B = self.netG_B(self.real_A)
            self.loss_idt_B = self.criterionIdt(self.idt_B, self.real_A) * self.lambda_A * self.lambda_idt
        else:
            self.loss_idt_A = self.loss_idt_B = torch.zeros(())
        self.loss_G_A = self.criterionGAN(self.netD_A(self.fake_B), True)
        self.loss_G_B = self.criterionGAN(self.netD_B(self.fake_A), True)
        self.loss_cycle_A = self.criterionCycle(self.rec_A, self.real_A) * self.lambda_A
        self.loss_cycle_B = self.criterionCycle(self.rec_B, self.real_B) * self.lambda_B
        self.loss_G = (self.loss_G_A + self.loss_G_B + self.loss_cycle_A + self.loss_cycle_B
                       + self.loss_idt_A + self.loss_idt_B)
        self.loss_G.backward()

    @staticmethod
    def set_requires_grad(nets, requires_grad: bool):
        for net in nets:
            for p in net.parameters():
                p.requires_grad = requires_grad

    def optimize_parameters(self):
        self.forward()
        self.set_requires_grad([self.netD_A, self.netD_B], False)
        self.optimizer_G.zero_grad()
        self.backward_G()
        self.optimizer_G.step()
        self.set_requires_grad([self.netD_A, self.netD_B], True)
        self.optimizer_D.zero_grad()
        self.backward_D_A()
        self.backward_D_B()
        self.optimizer_D.step()

    def losses(self) -> dict[str, float]:
        names = ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B")
        return {n: float(torch.as_tensor(getattr(self, f"loss_{n}")).detach()) for n in names}
