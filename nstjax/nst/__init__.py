"""Gatys neural style transfer: optimise an image so its VGG-19 features match a content photo
and its Gram matrices match one or more paintings.

Submodules, from data to job:

* :mod:`~nstjax.nst.config` — :class:`StylizeConfig` and the presets (settings as data);
* :mod:`~nstjax.nst.masks` — region masks per layer (and every mask name below);
* :mod:`~nstjax.nst.mask_files`, :mod:`~nstjax.nst.mask_regions`, :mod:`~nstjax.nst.region_styles` — mask
  and segmentation files, regions matched by colour, which style each region takes;
* :mod:`~nstjax.nst.engine` — static spec, targets, objective, the jitted optimiser loop;
* :mod:`~nstjax.nst.problem` — images, colour transforms and masks prepared once, targets per scale;
* :mod:`~nstjax.nst.memory` — memory estimate and rematerialisation choice;
* :mod:`~nstjax.nst.estimate` — run-time estimate and the per-platform ``auto`` preset;
* :mod:`~nstjax.nst.run` — :func:`run_stylize`: schedule, progress, early stop, Ctrl-C, files;
* :mod:`~nstjax.nst.batch_engine` — many images at once: size buckets, vmapped optimisers, devices;
* :mod:`~nstjax.nst.batch_manifest` — the resumable manifest of a batch job;
* :mod:`~nstjax.nst.batch` — the batch job over files: inputs, hosts, outputs, progress, report.
"""


from ..lazy import lazy_exports

# Public name -> the module that defines it, imported on first use (nstjax --help never imports JAX).
_EXPORTS = {
    "BatchProgress": ".batch",
    "BatchReport": ".batch",
    "stylize_batch": ".batch",
    "stylize_images": ".batch",
    "PRESETS": ".config",
    "StylizeConfig": ".config",
    "preset": ".config",
    "Progress": ".run",
    "RunPlan": ".run",
    "StopStylize": ".run",
    "StylizeInterrupted": ".run",
    "StylizeResult": ".run",
    "run_stylize": ".run",
    "stylize": ".run",
    "stylize_to_file": ".run",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
