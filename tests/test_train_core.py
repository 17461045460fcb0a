"""The shared training core (nstjax.train) on a toy model: data, loop, checkpoints, resume, devices.

The toy system learns a 3x3 convolution that maps each image to its colour
channels reversed (RGB -> BGR), from image folders the tests write. Everything
is tiny (12 px crops, batches of 4) so the file runs in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from nstjax.errors import NstjaxError
from nstjax.train import (
    Augment,
    BatchLoader,
    NetState,
    RunDir,
    TrainingInterrupted,
    apply_gradients,
    constant_then_linear_decay,
    data_mesh,
    fit,
    image_grid,
    init_net,
    load_export,
    paired,
    plain,
    replicate,
    unit_to_image,
    unpaired,
)

AUG = Augment(load_size=16, crop_size=12)


def write_folder(folder: Path, count: int, seed: int, size=(20, 24), suffix=".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        small = rng.random((4, 4, 3))
        image = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize(size[::-1], Image.BILINEAR))
        path = folder / f"img{i:02d}{suffix}"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- the toy system


class Toy(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Conv(3, (3, 3), padding="SAME", name="conv")(x)


@flax.struct.dataclass
class ToyState:
    step: jax.Array
    net: NetState


def toy_tx(total=40):
    return optax.adam(constant_then_linear_decay(0.05, total, total // 2))


def toy_state(mesh, seed=0):
    params = Toy().init(jax.random.key(seed), jnp.zeros((1, 12, 12, 3)))["params"]
    return replicate(ToyState(step=jnp.int32(0), net=init_net(params, toy_tx())), mesh)


@jax.jit
def _toy_step(state, batch):
    def loss_fn(params):
        out = Toy().apply({"params": params}, batch["image"])
        return jnp.mean(jnp.square(out - batch["image"][..., ::-1]))

    loss, grads = jax.value_and_grad(loss_fn)(state.net.params)
    return state.replace(step=state.step + 1, net=apply_gradients(state.net, grads, toy_tx())), {"loss": loss}


toy_step = jax.jit(_toy_step, donate_argnums=0)


def sample(state):
    return image_grid([[np.zeros((12, 12, 3)), np.ones((12, 12, 3))]], labels=["a", "b"])


def export(state):
    return state.net.params, {"system": "toy"}


def train(folder, run_path, steps, *, resume=False, stop_at=None, mesh=None, seed=0):
    mesh = mesh or data_mesh()
    run = RunDir.open(run_path, {"system": "toy", "train": {"steps": steps, "seed": seed}}, resume=resume,
                      may_change=("train.steps",))
    state = toy_state(mesh)
    if resume:
        state = run.restore(state)
    loader = BatchLoader(plain(folder), 4, AUG, seed=seed, threads=2)
    events = []
    try:
        state = fit(state, toy_step, loader, run, mesh=mesh, total_steps=steps, log_every=5, sample_every=10,
                    checkpoint_every=10, sample_fn=sample, export_fn=export, progress=events.append,
                    stop=None if stop_at is None else (lambda: len([e for e in events if e.event == "log"]) * 5 >= stop_at))
    finally:
        run.close()
        loader.close()
    return state, events


# ----------------------------------------------------------------------------- data


def test_batches_are_a_pure_function_of_seed_and_step(tmp_path):
    write_folder(tmp_path / "a", 7, seed=1)
    one = BatchLoader(plain(tmp_path / "a"), 4, AUG, seed=3, threads=2)
    two = BatchLoader(plain(tmp_path / "a"), 4, AUG, seed=3, threads=1, prefetch=1)
    other = BatchLoader(plain(tmp_path / "a"), 4, AUG, seed=4)
    first = {s: b["image"] for s, b in one.iterate(0, 5)}
    again = {s: b["image"] for s, b in two.iterate(3, 5)}  # starting later replays the same batches
    for s in (3, 4):
        np.testing.assert_array_equal(first[s], again[s])
    assert not np.array_equal(first[0], other.batch(0)["image"])
    assert first[0].shape == (4, 12, 12, 3) and first[0].dtype == np.float32
    assert -1.0 <= first[0].min() and first[0].max() <= 1.0
    # An epoch is 7 samples: steps 0 and 1 (8 samples) see every file at least once.
    assert one.steps_per_epoch == 2


def test_each_host_gets_its_slice_of_the_global_batch(tmp_path):
    write_folder(tmp_path / "a", 9, seed=2)
    whole = BatchLoader(plain(tmp_path / "a"), 4, AUG, seed=0).batch(3)["image"]
    parts = [BatchLoader(plain(tmp_path / "a"), 4, AUG, seed=0, process_index=i, process_count=2).batch(3)["image"]
             for i in range(2)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    with pytest.raises(NstjaxError, match="not a multiple of the 3 processes"):
        BatchLoader(plain(tmp_path / "a"), 4, AUG, process_count=3)


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    write_folder(tmp_path / "a", 4, seed=3)
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    loader = BatchLoader(plain(tmp_path / "a"), 5, AUG, seed=0)
    batch = loader.batch(0)["image"]  # one epoch: the broken file's slot is filled by another
    assert batch.shape == (5, 12, 12, 3) and np.isfinite(batch).all()
    assert list(loader.skipped) == [tmp_path / "a" / "broken.png"]
    assert "not an image" in loader.skipped[tmp_path / "a" / "broken.png"]


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(NstjaxError, match="no images in the folder") as info:
        plain(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)
    with pytest.raises(NstjaxError, match="no such folder"):
        unpaired(tmp_path / "missing", tmp_path / "empty")
    write_folder(tmp_path / "x", 2, seed=0)
    write_folder(tmp_path / "y", 2, seed=1, suffix=".jpg")
    (tmp_path / "z").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "z" / "other.png")
    with pytest.raises(NstjaxError, match="has a partner"):
        paired(tmp_path / "x", tmp_path / "z")
    with pytest.raises(NstjaxError, match="at least the crop size"):
        Augment(load_size=8, crop_size=12)


def test_paired_fields_share_crop_and_flip_and_labels_stay_ids(tmp_path):
    # A photo and a "label map" made from the same pattern: after augmentation they must still line up.
    (tmp_path / "photos").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        ids = rng.integers(0, 4, (5, 6)).repeat(4, 0).repeat(4, 1)  # 20x24 blocks of ids 0..3
        Image.fromarray((ids * 60).astype(np.uint8)).convert("RGB").save(tmp_path / "photos" / f"s{i}.png")
        Image.fromarray(ids.astype(np.uint8), mode="L").save(tmp_path / "labels" / f"s{i}.png")
    Image.new("RGB", (20, 24)).save(tmp_path / "photos" / "unpaired.png")  # no partner: left out

    def labels(path):
        return np.asarray(Image.open(path), np.int32)

    data = paired(tmp_path / "labels", tmp_path / "photos", fields=("labels", "image"), kinds=("labels", "image"))
    assert len(data) == 3
    loader = BatchLoader(data, 3, Augment(load_size=20, crop_size=16), seed=5, decoders={"labels": labels})
    for step in range(4):
        batch = loader.batch(step)
        assert batch["labels"].dtype == np.int32 and set(np.unique(batch["labels"])) <= {0, 1, 2, 3}
        grey = np.rint(unit_to_image(batch["image"])[..., 0] * 255 / 60)
        inside = (grey == batch["labels"]).mean()
        assert inside > 0.85, inside  # only Lanczos edges between blocks may differ


# ----------------------------------------------------------------------------- the loop


def test_fit_trains_logs_samples_checkpoints_and_exports(tmp_path):
    write_folder(tmp_path / "a", 6, seed=4)
    state, events = train(tmp_path / "a", tmp_path / "run", 20)
    assert int(state.step) == 20
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]  # it learns the channel swap
    assert all(r["steps_per_second"] > 0 for r in records)
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["step_0000010.png", "step_0000020.png"]
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 1000
    assert sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()) == [10, 20]
    kinds = [e.event for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("checkpoint") == 2
    params, config = load_export(tmp_path / "run")
    assert config == {"system": "toy"}
    np.testing.assert_allclose(params["conv"]["kernel"], np.asarray(state.net.params["conv"]["kernel"]))


def test_resume_equals_uninterrupted(tmp_path):
    write_folder(tmp_path / "a", 6, seed=5)
    straight, _ = train(tmp_path / "a", tmp_path / "straight", 20)
    with pytest.raises(TrainingInterrupted) as info:
        train(tmp_path / "a", tmp_path / "resumed", 20, stop_at=10)
    assert info.value.step == 10 and info.value.checkpointed
    resumed, events = train(tmp_path / "a", tmp_path / "resumed", 20, resume=True)
    assert events[0].event == "start" and events[0].step == 10
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bit for bit on one CPU device
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]


def test_run_dir_rules(tmp_path):
    write_folder(tmp_path / "a", 6, seed=6)
    train(tmp_path / "a", tmp_path / "run", 10)
    with pytest.raises(NstjaxError, match="already holds a run; add --resume"):
        RunDir.open(tmp_path / "run", {"system": "toy", "train": {"steps": 10, "seed": 0}}, resume=False)
    with pytest.raises(NstjaxError, match=r"different settings \(train.seed: 0 -> 1\)"):
        RunDir.open(tmp_path / "run", {"system": "toy", "train": {"steps": 30, "seed": 1}}, resume=True,
                    may_change=("train.steps",))
    with pytest.raises(NstjaxError, match="no run to resume"):
        RunDir.open(tmp_path / "nothing", {"system": "toy"}, resume=True)
    with pytest.raises(NstjaxError, match="no trained model here"):
        load_export(tmp_path / "a")
    # Training longer is allowed on resume, and continues from the last checkpoint.
    state, _ = train(tmp_path / "a", tmp_path / "run", 15, resume=True)
    assert int(state.step) == 15


MULTI_DEVICE = r"""
import json, sys
import numpy as np, jax
sys.path.insert(0, sys.argv[1])
import test_train_core as t
from pathlib import Path
folder, out = Path(sys.argv[2]), Path(sys.argv[3])
mesh = t.data_mesh()
state, _ = t.train(folder, out / f"run{len(mesh.devices)}", 10, mesh=mesh)
leaves = [np.asarray(x).tolist() for x in jax.tree.leaves(state.net.params)]
print(json.dumps({"devices": len(jax.devices()), "params": leaves}))
"""


def test_four_devices_give_the_result_of_one(tmp_path):
    write_folder(tmp_path / "a", 6, seed=7)
    results = {}
    for count in (1, 4):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}", "JAX_PLATFORMS": "cpu"}
        proc = subprocess.run(
            [sys.executable, "-c", MULTI_DEVICE, str(Path(__file__).parent), str(tmp_path / "a"), str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[count] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results[4]["devices"] == 4
    for a, b in zip(results[1]["params"], results[4]["params"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
