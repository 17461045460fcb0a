"""The host side of a stylisation: schedule, progress, early stop, Ctrl-C, files.

:func:`run_stylize` drives :mod:`nstjax.nst.engine` over the coarse-to-fine
schedule of a :class:`~nstjax.nst.config.StylizeConfig` and reports through a
``progress`` callback (it never prints). :func:`stylize` returns just the image;
:func:`stylize_to_file` is the job behind ``nstjax stylize``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..io import images
from ..io.images import ImageLike
from ..models.vgg import network_of
from ..weights import resolve_weights
from ..runtime import Interrupts, enable_compilation_cache
from .config import StylizeConfig, preset
from ..train.estimate import describe_device  # noqa: F401 - re-exported (nstjax.recreate uses it from here)
from .estimate import RunEstimate, estimate_run, nst_eta, remember_speed
from .engine import (
    HISTORY_LEN,
    device_params,
    evaluate,
    quick_spec,
    init_carry_jit,
    make_spec,
    traced_settings,
)
from .tiered import TieredChunks, tiering_applies
from .memory import choose_remat
from .problem import Problem, check_size, upsample


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What :func:`run_stylize` is about to do, reported once before the first step.

    shapes: (h, w) of the optimised image at each scale, coarse to fine.
    steps: optimiser steps at each scale.
    device: the JAX device that runs it, e.g. ``"cpu"`` or ``"gpu NVIDIA H100"``.
    estimate: expected evaluations and seconds per scale, and each scale's compilation.
    """

    shapes: tuple[tuple[int, int], ...]
    steps: tuple[int, ...]
    config: StylizeConfig
    weights_source: str
    device: str
    remat: str
    estimate: RunEstimate


@dataclasses.dataclass
class Progress:
    """What a progress callback sees after each chunk of steps."""

    scale: int
    scales: int
    size: tuple[int, int]
    step: int
    steps: int
    evaluations: int
    loss: float
    terms: dict[str, float]
    elapsed: float
    evals_per_second: float
    best_image: Callable[[], np.ndarray]
    """Fetches the best image so far as [H, W, 3] float32 in [0, 1] (a device→host copy)."""
    eta: float = math.nan
    """Seconds left in the whole run, every later scale at its own cost per step and its compilation
    included (:class:`~nstjax.train.estimate.WorkEta`); NaN when not estimated."""


@dataclasses.dataclass
class StylizeResult:
    """The outcome of :func:`run_stylize`.

    image: [H, W, 3] float32 RGB in [0, 1], the best image found.
    stopped: ``"steps"`` (ran all steps), ``"converged"`` (early stop),
      ``"nonfinite"`` (loss became NaN/inf; image is the last finite best) or
      ``"interrupted"`` (Ctrl-C).
    """

    image: np.ndarray
    loss: float
    terms: dict[str, float]
    steps: int
    evaluations: int
    stopped: str
    history: list[np.ndarray]
    """Per scale: loss at each step, float32 [steps]."""
    seconds: float
    config: StylizeConfig
    weights_source: str


class StopStylize(Exception):
    """Raise from a ``progress`` callback to stop :func:`run_stylize` and keep the best image so far.

    ``run_stylize`` then raises :class:`StylizeInterrupted` with the result, as on Ctrl-C. Servers and GUIs
    use it for a Stop button.
    """


class StylizeInterrupted(KeyboardInterrupt):
    """Ctrl-C (or :class:`StopStylize`) during :func:`run_stylize`; ``.result`` holds the best image so far."""

    def __init__(self, result: StylizeResult):
        super().__init__("interrupted")
        self.result = result


def run_stylize(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    *,
    weights: Any = None,
    config: StylizeConfig | None = None,
    content_mask: ImageLike | None = None,
    style_masks: ImageLike | Sequence[ImageLike] | None = None,
    region_styles: str | None = None,
    allow_unmatched: bool = False,
    progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[RunPlan], None] | None = None,
    **overrides: Any,
) -> StylizeResult:
    """Stylise ``content`` with ``styles``; the full result with losses and history.

    Args:
      content: path or float [H, W, 3] RGB array in [0, 1].
      styles: one or several paths/arrays.
      weights: :class:`~nstjax.models.VGGWeights`, a spec for
        :func:`~nstjax.models.load_weights` (path, source name, ``"random"``,
        ``"auto"``) or ``None`` (``$NSTJAX_WEIGHTS`` or ``auto``).
      config: settings; default the ``auto`` preset (see
        :func:`~nstjax.nst.config.auto_preset_name`). ``overrides`` replace fields.
      content_mask, style_masks: colour-coded segmentations (content + one per
        style) for semantic control, or ``style_masks`` alone: one grayscale mask
        of the content per style.
      region_styles: with several styles, which style each region takes, e.g.
        ``"#87ceeb:0,#228b22:1"``. A region drawing on several styles splits its
        weight by ``style_blend``.
      allow_unmatched: content regions whose colour is in no style segmentation
        get no style loss (reported as a warning) instead of an error.
      progress: called after every chunk of steps with a :class:`Progress`.
      on_start: called once with the :class:`RunPlan` (shapes, steps, weights,
        device, time estimate) after the inputs and weights are ready and before
        compilation. Asking for it or for ``progress`` measures the device's speed
        once per machine (:func:`~nstjax.train.estimate.measured_flops_per_second`).

    Raises:
      NstjaxError: bad input or settings.
      StylizeInterrupted: on Ctrl-C or :class:`StopStylize` from ``progress``, carrying the best
        result so far.
    """
    config = (config or preset(None)).replace(**overrides) if overrides else (config or preset(None))
    enable_compilation_cache()
    problem = Problem(
        content,
        styles,
        config,
        None,
        content_mask=content_mask,
        style_masks=style_masks,
        region_styles=region_styles,
        allow_unmatched=allow_unmatched,
    )
    schedule = config.schedule
    for longest, _ in schedule:
        check_size(problem.shape_at(longest), config, "output")
    # Weights only after the inputs passed their checks: a mistyped path must not wait for a download.
    problem.weights = weights = resolve_weights(weights, config.seed)
    final_shape = problem.shape_at(config.size)
    network = network_of(weights.params)
    remat = choose_remat(final_shape, config, network=network)
    spec = make_spec(config, weights.preprocessing, guided=problem.guided, remat=remat)
    loss_weights, stop = traced_settings(config, getattr(weights, "style_weight_scale", 1.0))
    # On one CPU the Winograd forms of the kernels are made beside the planned program (nstjax.nst.tiered).
    params = device_params(weights.params, spec=None if tiering_applies(spec) else spec)
    chunks = TieredChunks(spec, params)
    eta = None
    if on_start is not None or progress is not None:
        shapes = tuple(problem.shape_at(longest) for longest, _ in schedule)
        estimate = estimate_run(config, shapes, network=network)
        eta = nst_eta(estimate.phases())
        if on_start is not None:
            on_start(
                RunPlan(
                    shapes=shapes,
                    steps=tuple(steps for _, steps in schedule),
                    config=config,
                    weights_source=getattr(weights, "label", weights.source),
                    device=describe_device(),
                    remat=remat,
                    estimate=estimate,
                )
            )

    start = time.perf_counter()
    histories: list[np.ndarray] = []
    total_steps = total_evals = 0
    stopped = "steps"
    image = None
    carry = None
    history: list[np.ndarray] = []  # this scale's chunks
    loss, terms = math.nan, {}

    def result_now(best: np.ndarray) -> StylizeResult:
        return StylizeResult(
            image=problem.finish(best),
            loss=loss,
            terms=terms,
            steps=total_steps,
            evaluations=total_evals,
            stopped=stopped,
            history=histories,
            seconds=time.perf_counter() - start,
            config=config,
            weights_source=getattr(weights, "label", weights.source),
        )

    # Ctrl-C stops the steps at once; one that lands in a garbage-collection callback (JAX has one), where
    # Python would drop it, stops them after the chunk (runtime.Interrupts).
    with Interrupts(immediate=True) as interrupts:
        try:
            for scale_index, (longest, steps) in enumerate(schedule):
                if eta is not None:
                    eta.start(scale_index)  # this scale's programs compile from here (targets first)
                shape = problem.shape_at(longest)
                targets, _ = problem.targets(shape, spec, params)
                init = problem.initial_image(shape) if image is None else upsample(image, shape)
                carry = init_carry_jit(jnp.asarray(init)[None], spec)
                chunks.start(carry, targets, loss_weights, jnp.int32(1), stop, steps=steps)
                history = []
                done = 0
                stopped = "steps"
                chunk = 1  # the first chunk also pays for compilation; then aim for ~1 s per chunk
                scale_start = time.perf_counter()
                while done < steps:
                    n = min(chunk, steps - done, HISTORY_LEN)
                    if config.save_every:
                        n = min(n, config.save_every - done % config.save_every)
                    t0 = time.perf_counter()
                    carry, hist = chunks(carry, targets, loss_weights, jnp.int32(n), stop)
                    hist = np.asarray(hist)
                    interrupts.check()
                    ran = int(carry.step) - done
                    history.append(hist[:ran])
                    done += ran
                    dt = time.perf_counter() - t0
                    if ran and dt > 0:
                        chunk = max(1, min(HISTORY_LEN, int(ran / dt)))
                    loss = float(carry.best_loss)
                    if progress is not None:
                        _, t = evaluate(carry.best_image, params, targets, loss_weights, quick_spec(spec))
                        terms = {k: float(v[0]) for k, v in t.items()}
                    # After evaluate: its compilation (first chunk) counts as this scale's, not as its steps'.
                    left = math.nan if eta is None else eta.update(scale_index, done)
                    if progress is not None:
                        progress(
                            Progress(
                                scale=scale_index + 1,
                                scales=len(schedule),
                                size=shape,
                                step=done,
                                steps=steps,
                                evaluations=total_evals + int(carry.evaluations),
                                loss=loss,
                                terms=terms,
                                elapsed=time.perf_counter() - scale_start,
                                evals_per_second=int(carry.evaluations) / max(time.perf_counter() - scale_start, 1e-9),
                                best_image=lambda c=carry: problem.finish(np.asarray(c.best_image[0])),
                                eta=left,
                            )
                        )
                    if bool(carry.nonfinite):
                        stopped = "nonfinite"
                        break
                    if ran < n:  # the loop left early: converged at this scale
                        stopped = "converged"
                        break
                histories.append(np.concatenate(history) if history else np.zeros((0,), np.float32))
                total_steps += int(carry.step)
                total_evals += int(carry.evaluations)
                image = np.asarray(carry.best_image[0])
                carry = None  # counted: an interrupt before the next scale starts keeps `image`
                if stopped == "nonfinite":
                    break
        except (KeyboardInterrupt, StopStylize):
            stopped = "interrupted"
            best = image
            if carry is not None and np.isfinite(float(carry.best_loss)):
                best = np.asarray(carry.best_image[0])
                total_steps += int(carry.step)
                total_evals += int(carry.evaluations)
                histories.append(np.concatenate(history) if history else np.zeros((0,), np.float32))
            if best is None:
                raise  # nothing ran yet: no image to keep
            raise StylizeInterrupted(result_now(best)) from None

    chunks.join()  # a compilation still running finishes, so the next run finds it in the cache
    if eta is not None:  # the next plan on this machine expects as much
        remember_speed(eta)
    final_targets, _ = problem.targets(image.shape[:2], spec, params)
    total, t = evaluate(jnp.asarray(image)[None], params, final_targets, loss_weights, quick_spec(spec))
    loss, terms = float(total), {k: float(v[0]) for k, v in t.items()}
    return result_now(image)


def stylize(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    *,
    weights: Any = None,
    config: StylizeConfig | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Stylise ``content`` with ``styles`` and return the image.

    Takes the arguments of :func:`run_stylize`; returns float32 [H, W, 3], RGB in
    [0, 1], with the longest side ``config.size``.
    """
    return run_stylize(content, styles, weights=weights, config=config, **kwargs).image


def snapshot_path(output: str | os.PathLike, step: int, scale: int | None = None) -> Path:
    """Where ``--save-every`` writes: ``out_step0050.png`` (``out_s1_step0050.png`` per scale)."""
    output = Path(output)
    tag = f"_s{scale}" if scale is not None else ""
    return output.with_name(f"{output.stem}{tag}_step{step:04d}{output.suffix}")


def stylize_to_file(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    output: str | os.PathLike,
    *,
    config: StylizeConfig | None = None,
    weights: Any = None,
    quality: int = 95,
    progress: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> StylizeResult:
    """Run :func:`run_stylize` and write the image to ``output``; the job behind ``nstjax stylize``.

    Every write is atomic. With ``config.save_every`` the best image so far is
    also written every that many steps (:func:`snapshot_path`). ``kwargs`` go to
    :func:`run_stylize`.

    Returns:
      The :class:`StylizeResult`, its image written to ``output``. When the loss
      became NaN/inf (``result.stopped == "nonfinite"``) the last finite image is
      what was written.

    Raises:
      NstjaxError: bad input or settings, or ``output`` cannot be written
        (checked before any work).
      StylizeInterrupted: Ctrl-C; the best image so far was written to ``output``
        first.
    """
    output = images.check_output_path(output)
    config = config or preset(None)
    multi = len(config.schedule) > 1

    def on_progress(p: Progress) -> None:
        if progress is not None:
            progress(p)
        if config.save_every and p.step % config.save_every == 0 and p.step < p.steps:
            images.save_image(snapshot_path(output, p.step, p.scale if multi else None), p.best_image(), quality=quality)

    callback = on_progress if (progress is not None or config.save_every) else None
    try:
        result = run_stylize(content, styles, weights=weights, config=config, progress=callback, **kwargs)
    except StylizeInterrupted as interrupted:
        images.save_image(output, interrupted.result.image, quality=quality)
        raise
    images.save_image(output, result.image, quality=quality)
    return result
