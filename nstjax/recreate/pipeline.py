"""The lost-painting pipeline in one call: sketch → photo → painting.

Stage 1 turns a colour-coded sketch into a photo-like scene: with a trained
SPADE/pix2pix run (``photo_model``), or with no trained model at all by
exemplar-guided NST (``exemplars``, :mod:`nstjax.recreate.exemplars`). Stage 2
paints the photo in the style of a painting: semantic NST by default when the
painting's label map is given (each class of the sketch takes the style of the
same class in the painting, missing classes borrow their nearest class's,
:mod:`nstjax.recreate.classes`), plain Gatys NST, or a trained CycleGAN run.

Plain NST has no idea what is sky and what is field, so it happily puts a
painting's sky colours on the ground; :func:`~nstjax.recreate.score.sky_on_ground_score`
measures that, and a recreation with ``stages`` runs both and records the score of each.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NstjaxError
from ..io import images
from ..io.atomic import atomic_path
from ..nst.masks import MaskWarning
from ..labels import Palette, colorize, load_palette, read_label_map, resize_labels, save_label_map
from .classes import resolve_fallbacks
from .events import RecreatePlan, RecreateWarning, StageDone, StagePlan, StageProgress, StageStart
from .exemplars import (
    DEFAULT_MAX_EXEMPLARS,
    MAX_SCAN,
    choose_exemplars,
    fit_labels,
    load_exemplars,
    photo_guidance,
    remap_labels,
    scan_exemplars,
)
from .score import sky_on_ground_patch_score, sky_on_ground_score
from .sheet import contact_sheet

__all__ = [
    "DEFAULT_PHOTO_CONTENT_WEIGHT",
    "PAINTERS",
    "RecreateResult",
    "parse_painter",
    "recreate",
]

PAINTERS = ("auto", "nst", "semantic-nst", "cyclegan:RUN_DIR")
"""Stage-2 choices; ``auto`` = ``semantic-nst`` with painting labels, else ``nst``."""

DEFAULT_PHOTO_CONTENT_WEIGHT = 0.02
"""Weight of the flat per-class mean-colour image as the exemplar stage's content (style weight 5e3):
enough to keep each region near its class's mean colour, far too weak to keep the flat look."""

MIN_COARSE_SIDE = 64
"""Exemplar stage: coarser passes (size/4, size/2) only where they are at least this many pixels."""

# Colours for the "whole painting" pseudo-region: the first one far from every palette colour is used.
_SENTINELS = ((0, 0, 0), (255, 0, 255), (0, 255, 255), (255, 255, 0), (0, 0, 255), (255, 0, 0), (0, 255, 0))

ImageIn = str | os.PathLike | np.ndarray


@dataclasses.dataclass
class RecreateResult:
    """What :func:`recreate` made.

    image: the painting, float32 [H, W, 3] RGB in [0, 1] (the ``final`` stage's image).
    stages: every stage's image by name: ``photo``, and those that ran of ``plain``, ``semantic``,
      ``cyclegan``.
    scores: sky-on-ground colour score (0..1, :func:`~nstjax.recreate.score.sky_on_ground_score`) of the
      unpainted ``photo`` (a baseline) and each painted stage, where the painting's labels allow one.
    record: everything ``recreate.json`` holds.
    patch_scores: the same for the patch score (:func:`~nstjax.recreate.score.sky_on_ground_patch_score`:
      colour and texture, sees moons and swirls on a ground of the sky's hue).
    """

    image: np.ndarray
    labels: np.ndarray
    stages: dict[str, np.ndarray]
    final: str
    scores: dict[str, float]
    record: dict[str, Any]
    seconds: float
    output: Path | None = None
    stages_dir: Path | None = None
    patch_scores: dict[str, float] = dataclasses.field(default_factory=dict)


def parse_painter(painter: str | None, has_labels: bool) -> tuple[str, Path | None]:
    """``"nst"`` / ``"semantic-nst"`` / ``"cyclegan:DIR"`` / ``"auto"`` -> (kind, run dir or None)."""
    painter = (painter or "auto").strip()
    if painter == "auto":
        return ("semantic-nst" if has_labels else "nst"), None
    if painter in ("nst", "semantic-nst"):
        return painter, None
    if painter.startswith("cyclegan:") and painter[len("cyclegan:") :].strip():
        return "cyclegan", Path(painter[len("cyclegan:") :].strip())
    raise NstjaxError(f"painter must be auto, nst, semantic-nst or cyclegan:RUN_DIR; got {painter!r}")


def _sha256(value) -> dict[str, Any]:
    if isinstance(value, str | os.PathLike):
        h = hashlib.sha256()
        with open(value, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return {"path": os.fspath(value), "sha256": h.hexdigest()}
    arr = np.ascontiguousarray(value)
    digest = hashlib.sha256(arr.tobytes() + str((arr.dtype, arr.shape)).encode()).hexdigest()
    return {"path": None, "array": f"{arr.dtype} {list(arr.shape)}", "sha256": digest}


def _read_labels(value, palette: Palette, what: str) -> np.ndarray:
    if isinstance(value, str | os.PathLike):
        return read_label_map(value, palette)
    labels = np.asarray(value)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise NstjaxError(f"{what} must be a path or an int [H, W] label map, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(palette)):
        raise NstjaxError(f"{what} holds class ids outside 0-{len(palette) - 1} (palette {palette.name!r})")
    return labels.astype(np.int32)


def _sentinel(palette: Palette) -> np.ndarray:
    colors = palette.colors.astype(np.float32)
    for c in _SENTINELS:
        if np.linalg.norm(colors - np.array(c, np.float32), axis=1).min() > 80:
            return np.array(c, np.uint8)
    raise NstjaxError(f"palette {palette.name!r} leaves no free colour for the whole-painting region")


def _photo_scales(size: int, config) -> tuple[int, ...]:
    from ..models import vgg

    layers = [n for n, _ in config.style_layers] + [n for n, _ in config.content_layers]
    need = max(MIN_COARSE_SIDE, 2 * vgg.min_input_size(layers, config.padding))
    return tuple(s for s in (size // 4, size // 2) if s >= need)


def _names(ids, palette: Palette) -> list[str]:
    return [palette.names[int(i)] for i in ids]


def recreate(
    sketch: ImageIn,
    painting: ImageIn,
    output: str | os.PathLike | None = None,
    *,
    painting_labels: ImageIn | None = None,
    photo_model: str | os.PathLike | None = None,
    exemplars: str | os.PathLike | None = None,
    painter: str = "auto",
    size: int | None = None,
    steps: int | None = None,
    weights: Any = None,
    stages: str | os.PathLike | None = None,
    seed: int = 0,
    config=None,
    palette: Palette | str = "landscape",
    max_exemplars: int = DEFAULT_MAX_EXEMPLARS,
    photo_content_weight: float = DEFAULT_PHOTO_CONTENT_WEIGHT,
    photo_scales: tuple[int, ...] | None = None,
    compare: bool | None = None,
    progress: Callable[[StageStart | StageProgress | StageDone], None] | None = None,
    on_start: Callable[[RecreatePlan], None] | None = None,
) -> RecreateResult:
    """Recreate a painting from a colour-coded sketch: sketch → photo → painting.

    Args:
      sketch: colour sketch or index PNG in ``palette`` (path), or int [H, W] class ids.
      painting: the painting whose style to take: path or float [H, W, 3] RGB in [0, 1].
      output: where to write the painting (atomically); ``None`` writes nothing but ``stages``.
      painting_labels: the painting's label map in ``palette`` (path or int array), e.g. from
        :func:`~nstjax.recreate.labeller.label_painting`. Resized to the painting by nearest neighbour
        (with a warning) when its size differs. Needed by ``semantic-nst`` and by the score.
      photo_model: stage 1 with a trained SPADE/pix2pix run directory.
      exemplars: stage 1 by exemplar-guided NST from ``DIR/labels/<stem>.png`` + ``DIR/photos/<stem>.png``.
        Exactly one of ``photo_model`` and ``exemplars``.
      painter: ``auto`` (``semantic-nst`` with painting labels, else ``nst``), ``nst``, ``semantic-nst``
        or ``cyclegan:RUN_DIR``.
      size: longest side of the photo and painting in pixels (default the config's).
      steps: optimiser steps of each NST stage at its final scale (default the config's).
      weights: VGG weights spec (``random``, ``auto``, a file …) or loaded :class:`~nstjax.models.VGGWeights`.
      stages: a folder for every stage's image, ``sheet.png`` and ``recreate.json``.
      seed: seeds the noise start, random weights and the sketch-to-photo model.
      config: base :class:`~nstjax.nst.config.StylizeConfig` of the NST stages (default the ``auto``
        preset); ``size``, ``steps`` and ``seed`` override it.
      max_exemplars: exemplar pairs used (chosen by :func:`~nstjax.recreate.exemplars.choose_exemplars`).
      photo_content_weight: content weight of the flat mean-colour image in the exemplar stage.
      photo_scales: coarser passes of the exemplar stage (default size/4, size/2 where >= 64 px).
      compare: also run plain and semantic NST (when labels allow) whatever the painter, for the sheet
        and the scores; default: when ``stages`` is given.
      progress: called with :class:`~nstjax.recreate.events.StageStart`, ``StageProgress``, ``StageDone``.
      on_start: called once with the :class:`~nstjax.recreate.events.RecreatePlan`.

    Raises:
      NstjaxError: bad input (one line naming the file): sketch colours not in the palette, painting
        labels sharing no class with the sketch, a missing exemplar folder or model, bad settings.
    """
    from ..weights import resolve_weights
    from ..nst.config import preset
    from ..nst.run import describe_device

    started = time.perf_counter()
    pal = load_palette(palette)
    kind, cyclegan_dir = parse_painter(painter, painting_labels is not None)
    if (photo_model is None) == (exemplars is None):
        raise NstjaxError(
            "stage 1 needs exactly one of a photo model (--photo-model RUN_DIR) and exemplars (--exemplars DIR)"
        )
    if kind == "semantic-nst" and painting_labels is None:
        raise NstjaxError(
            "the semantic-nst painter needs the painting's label map (--painting-labels; make one with "
            "`nstjax label-painting`)"
        )
    output = None if output is None else images.check_output_path(output)
    stages_dir = None
    if stages is not None:
        stages_dir = Path(stages)
        if stages_dir.exists() and not stages_dir.is_dir():
            raise NstjaxError("exists and is not a folder", stages_dir)
    compare = stages_dir is not None if compare is None else bool(compare)

    # ---- inputs, checked before any weights or long work
    sketch_full = _read_labels(sketch, pal, "sketch")
    painting_img = images.image_array(painting, "painting")
    p_labels = None
    if painting_labels is not None:
        p_labels = _read_labels(painting_labels, pal, "painting labels")
        where = painting_labels if isinstance(painting_labels, str | os.PathLike) else "painting labels"
        p_labels = fit_labels(p_labels, painting_img.shape[:2], where, "the painting")
    base = config if config is not None else preset(None)
    base = base.replace(**{k: v for k, v in dict(size=size, steps=steps, seed=seed).items() if v is not None})
    shape = images.fit_longest_side(sketch_full.shape, base.size)
    labels = resize_labels(sketch_full, shape) if shape != sketch_full.shape else sketch_full
    sketch_classes = np.unique(labels)

    painting_fallbacks = whole = None
    if p_labels is not None:
        painting_classes = np.unique(p_labels)
        common = np.intersect1d(sketch_classes, painting_classes)
        if common.size == 0:
            where = painting_labels if isinstance(painting_labels, str | os.PathLike) else None
            raise NstjaxError(
                f"the painting's label map shares no class with the sketch (sketch: "
                f"{', '.join(_names(sketch_classes, pal))}; painting: {', '.join(_names(painting_classes, pal))}); "
                "label the painting with the sketch's classes, or use --painter nst",
                where,
            )
        painting_fallbacks = resolve_fallbacks(sketch_classes.tolist(), painting_classes.tolist(), pal)
        borrowed = [fb.describe(pal) for fb in painting_fallbacks.values() if not fb.exact]
        if borrowed:
            warnings.warn(
                f"sketch classes missing from the painting take a stand-in's style: {', '.join(borrowed)}",
                RecreateWarning,
                stacklevel=2,
            )
        whole = len(pal) if any(fb.source is None for fb in painting_fallbacks.values()) else None

    # ---- stage 1 inputs
    chosen_pairs: list = []
    guidance = None
    if exemplars is not None:
        pairs = scan_exemplars(exemplars, max_scan=MAX_SCAN)
        candidates = [read_label_map(p.labels_path, pal) for p in pairs]
        picks = choose_exemplars(labels, candidates, len(pal), max_exemplars)
        chosen_pairs = [pairs[i] for i in picks]
        ex_labels, ex_photos = load_exemplars(chosen_pairs, pal)
        guidance = photo_guidance(labels, ex_photos, ex_labels, pal)
    elif not Path(photo_model).is_dir():
        raise NstjaxError("no SPADE/pix2pix run directory here", photo_model)
    if cyclegan_dir is not None and not cyclegan_dir.is_dir():
        raise NstjaxError("no CycleGAN run directory here", cyclegan_dir)

    # ---- the stages to run
    photo_config = None
    if guidance is not None:
        scales = _photo_scales(base.size, base) if photo_scales is None else tuple(photo_scales)
        photo_config = base.replace(
            content_weight=photo_content_weight, init="noise", scales=scales, scale_steps=()
        )
    paint_config = base.replace(init="content")
    run_plain = kind == "nst" or compare
    run_semantic = p_labels is not None and (kind == "semantic-nst" or compare)
    plans = []
    if guidance is not None:
        plans.append(
            StagePlan("photo", f"exemplar-guided NST from {len(chosen_pairs)} exemplar(s)",
                      tuple(s for _, s in photo_config.schedule))
        )  # fmt: skip
    else:
        plans.append(StagePlan("photo", f"SPADE/pix2pix run {photo_model}"))
    if run_plain:
        plans.append(StagePlan("plain", "plain NST", tuple(s for _, s in paint_config.schedule)))
    if run_semantic:
        plans.append(StagePlan("semantic", "semantic NST", tuple(s for _, s in paint_config.schedule)))
    if kind == "cyclegan":
        plans.append(StagePlan("cyclegan", f"CycleGAN run {cyclegan_dir}"))
    final = {"nst": "plain", "semantic-nst": "semantic", "cyclegan": "cyclegan"}[kind]
    needs_vgg = guidance is not None or run_plain or run_semantic
    vgg_weights = resolve_weights(weights, base.seed) if needs_vgg else None
    if on_start is not None:
        on_start(
            RecreatePlan(
                shape=shape,
                stages=tuple(plans),
                final=final,
                weights_source=None if vgg_weights is None else getattr(vgg_weights, "label", vgg_weights.source),
                device=describe_device(),
                classes=tuple(_names(sketch_classes, pal)),
            )
        )

    times: dict[str, float] = {}
    results: dict[str, Any] = {}

    def run_nst(name: str, method: str, content, styles, config, **kwargs) -> np.ndarray:
        from ..nst.run import run_stylize

        total = sum(s for _, s in config.schedule)
        offsets = np.cumsum([0, *(s for _, s in config.schedule)])
        if progress is not None:
            progress(StageStart(name, method, total))

        def forward(p) -> None:
            if progress is not None:
                progress(StageProgress(name, int(offsets[p.scale - 1]) + p.step, total, p))

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # A small class (a tree in a tiny sketch, a class one exemplar lacks) has no pixels at the
            # deepest layers: expected here, and it only means no style loss there.
            warnings.filterwarnings("ignore", message=r".* is empty at layer", category=MaskWarning)
            result = run_stylize(
                content, styles, weights=vgg_weights, config=config, progress=forward if progress else None, **kwargs
            )
        times[name] = time.perf_counter() - t0
        results[name] = result
        if progress is not None:
            progress(StageDone(name, times[name], f"loss {result.loss:.4g}, {result.steps} steps"))
        return result.image

    def run_model(name: str, method: str, fn) -> np.ndarray:
        if progress is not None:
            progress(StageStart(name, method, 0))
        t0 = time.perf_counter()
        image = fn()
        times[name] = time.perf_counter() - t0
        if progress is not None:
            progress(StageDone(name, times[name]))
        return image

    out_images: dict[str, np.ndarray] = {}
    # ---- stage 1: sketch -> photo
    if guidance is not None:
        out_images["photo"] = run_nst(
            "photo",
            plans[0].method,
            guidance.content,
            guidance.styles,
            photo_config,
            content_mask=guidance.content_mask,
            style_masks=guidance.style_masks,
        )
    else:
        from ._models import render_photo

        out_images["photo"] = run_model(
            "photo", plans[0].method, lambda: render_photo(photo_model, labels, seed=base.seed)
        )
    photo = out_images["photo"]

    # ---- stage 2: photo -> painting
    if run_plain:
        out_images["plain"] = run_nst("plain", "plain NST", photo, painting_img, paint_config)
    if run_semantic:
        colors = np.concatenate([pal.colors, _sentinel(pal)[None]]) if whole is not None else pal.colors
        content_mask = colors[remap_labels(labels, painting_fallbacks, whole)]
        styles, style_masks = [painting_img], [colorize(p_labels, pal)]
        if whole is not None:  # the painting again, all one region: the style of the whole painting
            styles.append(painting_img)
            style_masks.append(np.broadcast_to(colors[whole], (*painting_img.shape[:2], 3)).copy())
        out_images["semantic"] = run_nst(
            "semantic", "semantic NST", photo, styles, paint_config, content_mask=content_mask, style_masks=style_masks
        )
    if kind == "cyclegan":
        from ._models import translate_painting

        out_images["cyclegan"] = run_model(
            "cyclegan", f"CycleGAN run {cyclegan_dir}", lambda: translate_painting(cyclegan_dir, photo)
        )
    image = out_images[final]

    # ---- scores
    scores: dict[str, float] = {}
    score_details: dict[str, Any] = {}
    patch_scores: dict[str, float] = {}
    patch_details: dict[str, Any] = {}
    score_note = None
    if p_labels is not None:
        for name in ("photo", "plain", "semantic", "cyclegan"):
            if name in out_images:
                try:
                    s = sky_on_ground_score(out_images[name], labels, painting_img, p_labels, palette=pal)
                    t = sky_on_ground_patch_score(out_images[name], labels, painting_img, p_labels, palette=pal)
                except NstjaxError as e:
                    score_note = str(e)
                    break
                scores[name], patch_scores[name] = s.score, t.score
                score_details[name], patch_details[name] = s.as_dict(), t.as_dict()
    else:
        score_note = "no painting labels: the score needs the painting's sky and ground"

    # ---- the record
    seconds = time.perf_counter() - started
    record = _record(
        sketch=sketch, painting=painting, painting_labels=painting_labels, exemplars=exemplars,
        chosen_pairs=chosen_pairs, photo_model=photo_model, cyclegan_dir=cyclegan_dir, kind=kind, final=final,
        painter=painter, shape=shape, base=base, photo_config=photo_config, paint_config=paint_config,
        pal=pal, weights=weights, vgg_weights=vgg_weights, guidance=guidance,
        painting_fallbacks=painting_fallbacks, times=times, seconds=seconds, results=results,
        scores=score_details, patch_scores=patch_details, score_note=score_note, compare=compare, max_exemplars=max_exemplars,
        photo_content_weight=photo_content_weight, output=output, stages_dir=stages_dir,
        classes=_names(sketch_classes, pal),
    )  # fmt: skip
    result = RecreateResult(
        image=image, labels=labels, stages=out_images, final=final, scores=scores, patch_scores=patch_scores, record=record,
        seconds=seconds, output=output, stages_dir=stages_dir,
    )  # fmt: skip
    if output is not None:
        images.save_image(output, image)
    if stages_dir is not None:
        write_stages(result, stages_dir, pal, random_weights=vgg_weights is not None and vgg_weights.is_random)
    return result


def _config_dict(config) -> dict[str, Any] | None:
    return None if config is None else json.loads(json.dumps(dataclasses.asdict(config)))


def _record(**k) -> dict[str, Any]:
    from .. import __version__

    pal: Palette = k["pal"]
    vw = k["vgg_weights"]
    inputs: dict[str, Any] = {
        "sketch": _sha256(k["sketch"]),
        "painting": _sha256(k["painting"]),
        "painting_labels": None if k["painting_labels"] is None else _sha256(k["painting_labels"]),
        "exemplars": None,
        "photo_model": None if k["photo_model"] is None else {"path": os.fspath(k["photo_model"])},
        "cyclegan": None if k["cyclegan_dir"] is None else {"path": os.fspath(k["cyclegan_dir"])},
    }
    if k["exemplars"] is not None:
        inputs["exemplars"] = {
            "dir": os.fspath(k["exemplars"]),
            "used": [
                {"stem": p.stem, "labels": _sha256(p.labels_path), "photo": _sha256(p.photo_path)}
                for p in k["chosen_pairs"]
            ],
        }

    def fallbacks(table):
        if table is None:
            return None
        return {pal.names[c]: ("whole painting" if fb.source is None else pal.names[fb.source]) for c, fb in table.items()}

    base = k["base"]
    results = k["results"]
    return {
        "nstjax_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": inputs,
        "settings": {
            "painter": k["painter"],
            "painter_used": k["kind"],
            "final_stage": k["final"],
            "photo_source": "exemplars" if k["exemplars"] is not None else "photo_model",
            "size": base.size,
            "shape_hw": list(k["shape"]),
            "steps": base.steps,
            "palette": pal.name,
            "sketch_classes": k["classes"],
            "max_exemplars": k["max_exemplars"],
            "photo_content_weight": k["photo_content_weight"],
            "compare": k["compare"],
            "photo_config": _config_dict(k["photo_config"]),
            "painting_config": _config_dict(k["paint_config"]),
        },
        "weights": {
            "spec": k["weights"] if isinstance(k["weights"], str | type(None)) else getattr(k["weights"], "source", None),
            "source": None if vw is None else vw.source,
            "random": None if vw is None else vw.is_random,
            "note": (
                "random VGG features: NOT real style transfer, the images only exercise the pipeline"
                if vw is not None and vw.is_random
                else None
            ),
        },
        "seeds": {
            "seed": base.seed,
            "noise_init": base.seed if k["photo_config"] is not None else None,
            "random_weights": base.seed if vw is not None and vw.is_random else None,
            "sketch2photo": base.seed if k["photo_model"] is not None else None,
            "score_kmeans": 0,
        },
        "fallbacks": {
            "photo": None if k["guidance"] is None else fallbacks(k["guidance"].fallbacks),
            "painting": fallbacks(k["painting_fallbacks"]),
        },
        "times_s": {**{name: round(t, 3) for name, t in k["times"].items()}, "total": round(k["seconds"], 3)},
        "runs": {
            name: {"loss": r.loss, "steps": r.steps, "evaluations": r.evaluations, "stopped": r.stopped}
            for name, r in results.items()
        },
        "scores": {
            "metric": "sky on the ground: share of ground-class pixels nearer the painting's sky colours than its "
            "ground colours (CIELAB, nearest of 4 k-means centres per side)",
            "note": k["score_note"],
            **k["scores"],
        },
        "patch_scores": {
            "metric": "sky patches on the ground: share of the ground's 12 px patches (at 160 px) whose colour and "
            "texture vote sky among their 9 nearest painting patches",
            **k.get("patch_scores", {}),
        },
        "outputs": {
            "output": None if k["output"] is None else os.fspath(k["output"]),
            "stages": None if k["stages_dir"] is None else os.fspath(k["stages_dir"]),
        },
        "device": _device(),
    }


def _device() -> str:
    from ..nst.run import describe_device

    return describe_device()


STAGE_FILES = {"sketch": "sketch.png", "photo": "photo.png", "plain": "plain_nst.png", "semantic": "semantic_nst.png",
               "cyclegan": "cyclegan.png", "final": "final.png"}  # fmt: skip
"""File names in the stages folder."""


def write_stages(result: RecreateResult, directory: Path, palette: Palette, *, random_weights: bool) -> None:
    """Write each stage's image, ``sheet.png`` and ``recreate.json`` into ``directory`` (atomically)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NstjaxError(f"cannot create the stages folder: {e.strerror or e}", directory) from None
    save_label_map(directory / STAGE_FILES["sketch"], result.labels, palette, kind="color")
    for name, img in result.stages.items():
        images.save_image(directory / STAGE_FILES[name], img)
    images.save_image(directory / STAGE_FILES["final"], result.image)

    def caption(name: str, title: str) -> str:
        if name in result.scores:
            patches = f", patches {100 * result.patch_scores[name]:.0f}%" if name in result.patch_scores else ""
            return f"{title}\nsky on ground {100 * result.scores[name]:.0f}%{patches}"
        return title

    note = " (random VGG features)" if random_weights else ""
    panels = [
        ("sketch", colorize(result.labels, palette)),
        (caption("photo", "photo (stage 1)"), result.stages.get("photo")),
        (caption("plain", "plain NST" + note), result.stages.get("plain")),
        (caption("semantic", "semantic NST" + note), result.stages.get("semantic")),
        (caption(result.final, f"final: {result.final}"), result.image),
    ]
    images.save_image(directory / "sheet.png", contact_sheet(panels))
    record = dict(result.record)
    record["outputs"] = {**record["outputs"], "files": {**{k: STAGE_FILES[k] for k in ("sketch", *result.stages, "final")},
                                                      "sheet": "sheet.png"}}  # fmt: skip
    result.record = record
    with atomic_path(directory / "recreate.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
