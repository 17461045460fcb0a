"""The settings of a CycleGAN training run, declared once: :data:`CYCLEGAN_TRAIN_SETTINGS`.

``nstjax cyclegan train`` generates its model, loss and optimiser options from this table (the length, batch and
intervals are :data:`nstjax.train.settings.TRAIN_SETTINGS`); each setting is a field of
:class:`~nstjax.cyclegan.CycleGANConfig` (``size`` … ``upsample`` of its ``model``, ``lr`` of its ``optim``,
``lambda_*`` and ``pool_size`` of its ``loss``, ``dtype`` of the config itself), with the config's default.

This module imports no JAX (the CLI reads it at start-up), so the choices are written here; a test checks
them against the config's ``GeneratorName``, ``UpsampleName`` and ``DTYPES``.
"""

from __future__ import annotations

from ..schema import Schema, Setting

__all__ = ["CYCLEGAN_TRAIN_SETTINGS"]

CYCLEGAN_TRAIN_SETTINGS = Schema(
    "cyclegan-train",
    (
        Setting("size", int, "Side of the square training crops in pixels.", default=256, unit="px",
                label="Crop size", group="basic", widget="number", look={"min": 64, "step": 32}),
        Setting("generator", str, "Generator: resnet (the paper's) or unet (GDL_code's).", default="resnet",
                choices=("resnet", "unet"), label="Generator", group="basic", widget="select"),
        Setting("ngf", int, "Channels of the generators' first layer.", default=64, unit="channels",
                label="Generator width", widget="number", look={"min": 1, "step": 16}),
        Setting("ndf", int, "Channels of the discriminators' first layer.", default=64, unit="channels",
                label="Discriminator width", widget="number", look={"min": 1, "step": 16}),
        Setting("blocks", int, "Residual blocks of the resnet generator (9 at 256 px, 6 at 128 px).", default=9,
                unit="blocks", label="Residual blocks", widget="number", look={"min": 0, "step": 1}),
        Setting("upsample", str, "Upsampling: transpose (default for resnet) or resize (nearest + conv; default for "
                "unet).", choices=("transpose", "resize"), label="Upsampling", widget="select"),
        Setting("lr", float, "Adam learning rate (then linear decay to 0 over the second half).", default=2e-4,
                flags=("--lr",), label="Adam learning rate", widget="number", look={"min": 0, "step": 1e-5}),
        Setting("lambda_cycle", float, "Weight of the cycle-consistency L1 losses.", default=10.0,
                label="Cycle-consistency weight", group="basic", widget="number", look={"min": 0, "step": 1}),
        Setting("lambda_identity", float, "Identity L1 weight, as a fraction of --lambda-cycle.", default=0.5,
                unit="× cycle weight", label="Identity weight", widget="number", look={"min": 0, "step": 0.1}),
        Setting("pool_size", int, "Fake images kept for the discriminators (0 = no pool).", default=50,
                unit="images", label="History pool", widget="number", look={"min": 0, "step": 10}),
        Setting("dtype", str, "Compute dtype (bfloat16: GPUs/TPUs).", default="float32",
                choices=("float32", "bfloat16"), label="Compute dtype", widget="select"),
    ),
)  # fmt: skip
"""Every CycleGAN model, loss and optimiser setting a user chooses: help, unit, choices and web widget."""
