"""The memory estimate against XLA's buffer assignment (a real run's peak RSS: scripts/bench_memory.py)."""

from __future__ import annotations

import pytest

from nstjax.nst import memory
from nstjax.nst.config import preset
from nstjax.errors import NstjaxError


# Shallow layers keep compile times low; the estimate's per-element factors do not depend on depth.
LAYERS = dict(
    content_layers=(("relu2_2", 1.0),),
    style_layers=(("relu1_1", 1.0), ("relu2_1", 1.0), ("relu3_1", 1.0)),
)
NAMES = ["relu2_2", "relu1_1", "relu2_1", "relu3_1"]


@pytest.mark.parametrize(
    "optimizer, dtype", [("lbfgs", "float32"), ("adam", "bfloat16")], ids=["lbfgs-f32", "adam-bf16"]
)
def test_estimate_matches_xla_buffer_assignment(random_weights, optimizer, dtype):
    shape = (640, 512)
    config = preset("gatys", optimizer=optimizer, dtype=dtype, pooling="max", **LAYERS)
    measured = memory.compiled_memory(config, shape, random_weights)["total"]
    estimate = memory.estimate_bytes(
        shape, layers=NAMES, dtype=dtype, pooling="max", optimizer=optimizer, platform="cpu", buffers_only=True
    )
    assert 0.8 < estimate / measured < 1.25, (estimate / 2**20, measured / 2**20)


GATYS = ["relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def test_cpu_estimate_is_a_bounded_margin_over_xla_buffers(random_weights):
    """The default (Gatys) layers at 512 px, Adam: the estimate's buffer model holds for them too, and the CPU
    estimate (with its resident-memory margin) stays a bounded margin above XLA's buffer assignment.

    XLA's own figure (``compiled.memory_analysis()``) is the same on every machine for float32 (its plan does
    not depend on CPU flags); a process's peak RSS is not (the allocator and transparent huge pages decide
    it), so that comparison is scripts/bench_memory.py's (estimate / RSS growth 1.07-1.10 there). Seen here:
    buffers 1.02, with the margin 1.52.
    """
    shape = (512, 512)
    config = preset("gatys", optimizer="adam", pooling="max")
    measured = memory.compiled_memory(config, shape, random_weights)["total"]
    kwargs = dict(layers=GATYS, optimizer="adam", pooling="max", platform="cpu")
    buffers = memory.estimate_bytes(shape, buffers_only=True, **kwargs)
    assert 0.8 < buffers / measured < 1.25, (buffers / 2**20, measured / 2**20)
    # RSS grew 17-24 % past XLA's buffers at 512 px (docs/scale.md): the margin must cover that, and not
    # double the figure.
    resident = memory.estimate_bytes(shape, **kwargs)
    assert 1.3 < resident / measured < 2.0, (resident / 2**20, measured / 2**20)


def test_remat_model_on_accelerators():
    shape = (4096, 4096)
    sizes = {m: memory.estimate_bytes(shape, layers=GATYS, remat=m, platform="gpu") for m in memory.REMAT_ORDER}
    assert sizes["block"] < sizes["none"] and sizes["conv"] < sizes["none"]
    # XLA:CPU ignores remat for peak memory, so the CPU estimate does not change with it.
    cpu = {m: memory.estimate_bytes(shape, layers=GATYS, remat=m, platform="cpu") for m in memory.REMAT_ORDER}
    assert len(set(cpu.values())) == 1
    # The target, 4096 px on one 80 GB GPU with L-BFGS, fits in float32 without remat (model: 54 GB);
    # 5120 px needs remat, which auto picks, or bfloat16.
    config = preset("gatys", size=4096, pooling="max")
    assert sizes["none"] < 80e9
    assert memory.choose_remat(shape, config, available=int(80e9), platform="gpu") == "none"
    big = (5120, 5120)
    assert memory.estimate_bytes(big, layers=GATYS, platform="gpu") > 80e9
    assert memory.choose_remat(big, config, available=int(80e9), platform="gpu") in ("conv", "block")
    assert memory.choose_remat(big, config.replace(dtype="bfloat16"), available=int(80e9), platform="gpu") == "none"


def test_choose_remat_refuses_with_estimate_and_hint():
    config = preset("gatys", size=2048)
    with pytest.raises(NstjaxError) as info:
        memory.choose_remat((1536, 2048), config, available=256 << 20)
    message = str(info.value)
    assert "needs about" in message and "GiB" in message and "--dtype bfloat16" in message
    assert memory.choose_remat((64, 64), config, available=64 << 30) == "none"
