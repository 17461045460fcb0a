"""``recreate.json``: what a recreation read, decided, ran and measured, for reproducing and comparing runs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..hub import sha256_file, timestamp
from ..io.atomic import atomic_path
from ..nst.run import describe_device
from .classes import Fallback
from .plan import Plan
from .stages import STAGE_FILES, Scores, StageRunner

__all__ = ["make_record", "write_record"]

COLOUR_METRIC = (
    "sky on the ground: share of ground-class pixels nearer the painting's sky colours than its ground colours "
    "(CIELAB, nearest of 4 k-means centres per side)"
)
PATCH_METRIC = (
    "sky patches on the ground: share of the ground's 12 px patches (at 160 px) whose colour and texture vote "
    "sky among their 9 nearest painting patches"
)


def _digest(value) -> dict[str, Any]:
    """An input's identity: a file's path and SHA-256, or an array's dtype, shape and SHA-256."""
    if isinstance(value, str | os.PathLike):
        return {"path": os.fspath(value), "sha256": sha256_file(value)}
    arr = np.ascontiguousarray(value)
    digest = hashlib.sha256(arr.tobytes() + str((arr.dtype, arr.shape)).encode()).hexdigest()
    return {"path": None, "array": f"{arr.dtype} {list(arr.shape)}", "sha256": digest}


def _config_dict(config) -> dict[str, Any] | None:
    return None if config is None else json.loads(json.dumps(dataclasses.asdict(config)))


def _fallback_names(table: dict[int, Fallback] | None, plan: Plan) -> dict[str, str] | None:
    if table is None:
        return None
    names = plan.palette.names
    return {names[c]: ("whole painting" if fb.source is None else names[fb.source]) for c, fb in table.items()}


def make_record(plan: Plan, *, sketch, painting, painting_labels, vgg_weights, runner: StageRunner,
                scores: Scores, seconds: float, interrupted: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Everything ``recreate.json`` holds: inputs (with SHA-256), settings, weights, seeds, fallbacks,
    times in seconds, NST runs, scores, outputs and device. ``sketch``, ``painting`` and ``painting_labels``
    are the inputs as given (paths or arrays).

    ``interrupted`` (a run stopped by Ctrl-C): where it stopped, recorded as is under ``"interrupted"``;
    the files are then the finished stages and the running stage's best so far (no final or sheet)."""
    config, base = plan.config, plan.base
    random = vgg_weights is not None and vgg_weights.is_random
    inputs: dict[str, Any] = {
        "sketch": _digest(sketch),
        "painting": _digest(painting),
        "painting_labels": None if painting_labels is None else _digest(painting_labels),
        "exemplars": None,
        "photo_model": None if config.photo_model is None else {"path": os.fspath(config.photo_model)},
        "cyclegan": None if plan.cyclegan_dir is None else {"path": os.fspath(plan.cyclegan_dir)},
    }
    if config.exemplars is not None:
        inputs["exemplars"] = {
            "dir": os.fspath(config.exemplars),
            "used": [
                {"stem": p.stem, "labels": _digest(p.labels_path), "photo": _digest(p.photo_path)}
                for p in plan.chosen_pairs
            ],
        }
    outputs: dict[str, Any] = {
        "output": None if plan.output is None else os.fspath(plan.output),
        "stages": None if plan.stages_dir is None else os.fspath(plan.stages_dir),
    }
    if plan.stages_dir is not None and interrupted is None:
        files = {k: STAGE_FILES[k] for k in ("sketch", *runner.images, "final")}
        outputs["files"] = {**files, "sheet": "sheet.png"}
    elif plan.stages_dir is not None:
        partial = () if runner.partial is None else (runner.partial[0],)
        outputs["files"] = {k: STAGE_FILES[k] for k in ("sketch", *runner.images, *partial)}
    weights = config.weights
    return {
        "nstjax_version": __version__,
        "created": timestamp(),
        "inputs": inputs,
        "settings": {
            "painter": config.painter,
            "painter_used": plan.kind,
            "final_stage": plan.final,
            "photo_source": "exemplars" if config.exemplars is not None else "photo_model",
            "size": base.size,
            "shape_hw": list(plan.shape),
            "steps": base.steps,
            "palette": plan.palette.name,
            "sketch_classes": list(plan.classes),
            "max_exemplars": config.max_exemplars,
            "photo_content_weight": config.photo_content_weight,
            "compare": config.compares,
            "photo_config": _config_dict(plan.photo_config),
            "painting_config": _config_dict(plan.paint_config),
        },
        "weights": {
            "spec": weights if isinstance(weights, str | type(None)) else getattr(weights, "source", None),
            "source": None if vgg_weights is None else vgg_weights.source,
            "random": None if vgg_weights is None else vgg_weights.is_random,
            "note": "random VGG features: NOT real style transfer, the images only exercise the pipeline"
            if random
            else None,
        },
        "seeds": {
            "seed": base.seed,
            "noise_init": base.seed if plan.photo_config is not None else None,
            "random_weights": base.seed if random else None,
            "sketch2photo": base.seed if config.photo_model is not None else None,
            "score_kmeans": 0,
        },
        "fallbacks": {
            "photo": None if plan.guidance is None else _fallback_names(plan.guidance.fallbacks, plan),
            "painting": _fallback_names(plan.painting_fallbacks, plan),
        },
        "times_s": {**{name: round(t, 3) for name, t in runner.times.items()}, "total": round(seconds, 3)},
        "runs": {
            name: {"loss": r.loss, "steps": r.steps, "evaluations": r.evaluations, "stopped": r.stopped}
            for name, r in runner.runs.items()
        },
        "scores": {"metric": COLOUR_METRIC, "note": scores.note, **scores.colour_details},
        "patch_scores": {"metric": PATCH_METRIC, **scores.patch_details},
        "outputs": outputs,
        "device": describe_device(),
        **({} if interrupted is None else {"interrupted": interrupted}),
    }


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_record(directory: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as ``directory/recreate.json``, atomically."""
    with atomic_path(directory / "recreate.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=_json_default) + "\n", encoding="utf-8")
