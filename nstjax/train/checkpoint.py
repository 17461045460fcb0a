"""A training run's directory: its config, checkpoints (orbax), inference export, metrics, samples.

Layout of ``RUN_DIR``::

    config.json        the run's settings (system, model, training, data); resume checks them
    checkpoints/<N>/   full train state after step N (orbax-checkpoint; the last few are kept)
    export/            what inference needs: the generator parameters and config.json
    metrics.jsonl      one JSON object per logged step
    loss_curve.png     the losses so far
    samples/step_<N>.png  sample grids

In a multi-host run (:mod:`~nstjax.train.hosts`) every process takes part in
the orbax checkpoints and only the primary one writes the other files; the
directory must be on a filesystem all hosts share.

Checkpoints and the export are written by orbax, which writes into a temporary
folder and renames it when complete, so a crash never leaves a half checkpoint
under a final name (the temporary folders a crash leaves are removed when the run
is opened again). JSON and PNG files are written atomically
(:func:`nstjax.io.atomic.atomic_path`). A full disk ends a write with one line
naming the file (:class:`~nstjax.io.atomic.NoSpaceLeft`); the checkpoints before stay.
A checkpoint that is damaged on disk (truncated, edited) is refused on restore with
one line naming its step and file: once a save has finished, the SHA-256 of each of
its files is written beside them (``checkpoints/<N>/nstjax.sha256``, and
``export/params.sha256`` for the export), since orbax's own files carry no checksum
of the array bytes. :func:`verify_checkpoint` checks one checkpoint (digests, then
every array read back); ``nstjax check RUN`` (:mod:`nstjax.train.check`) checks a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

from .. import faults
from ..errors import NstjaxError
from ..io.atomic import NoSpaceLeft, atomic_path, exception_chain, no_space_left
from .hosts import barrier, is_primary, multi_process, to_host
from .plots import read_metrics

__all__ = [
    "CONFIG_NAME",
    "DIGESTS_NAME",
    "RunDir",
    "checkpoint_dirs",
    "latest_checkpoint",
    "load_export",
    "read_json",
    "verify_checkpoint",
    "verify_digests",
    "write_digests",
    "write_json",
]

CONFIG_NAME = "config.json"
DIGESTS_NAME = "nstjax.sha256"
"""The digest list of a finished checkpoint, inside its folder: ``<sha256 hex>  <path relative to the folder>``."""


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``; a missing or damaged file is a one-line NstjaxError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NstjaxError("no such file", path) from None
    except (OSError, ValueError) as exc:
        raise NstjaxError(f"unreadable JSON ({exc})", path) from None


def latest_checkpoint(run_dir: str | os.PathLike) -> int | None:
    """Step of the newest complete checkpoint in ``run_dir`` (what ``--resume`` starts from), or None.

    Reads the directory only (no JAX, no devices); orbax's temporary folders of a save
    that never finished do not count.
    """
    return max(checkpoint_dirs(run_dir), default=None)


@contextlib.contextmanager
def _disk_errors(path: Path) -> Iterator[None]:
    """A full disk under ``path`` (orbax and tensorstore wrap the OSError, or only quote it) -> NoSpaceLeft."""
    try:
        yield
    except NoSpaceLeft:
        raise
    except Exception as exc:
        if any(no_space_left(cause) or "no space left" in str(cause).lower() for cause in exception_chain(exc)):
            raise NoSpaceLeft(path) from None
        raise


def _chain_text(exc: BaseException) -> str:
    """The messages of ``exc`` and of every exception it was raised from, on one line."""
    return " | ".join(" ".join(str(cause).split()) for cause in exception_chain(exc))


def _damaged_file(step_dir: Path, error_text: str) -> Path | None:
    """The file of checkpoint folder ``step_dir`` that is damaged, or None if none is found.

    A metadata file that is empty or not JSON (orbax's ``_METADATA``, ``_CHECKPOINT_METADATA``,
    ``_sharding``, ``array_metadatas/*``), else a file that orbax's or tensorstore's ``error_text`` names.
    """
    with contextlib.suppress(OSError):
        files = sorted((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: (-len(p.parts), p))
        for path in files:
            if path.name.startswith("_") or path.parent.name == "array_metadatas":
                try:
                    json.loads(path.read_bytes() or b"?")
                except ValueError:
                    return path
        for path in files:  # deepest first: "d/0a1b…" before a folder's "_METADATA"
            if path.name in error_text:
                return path
    return None


def write_digests(folder: Path, listing: Path) -> Path:
    """Write the SHA-256 of every file under ``folder`` to ``listing`` (atomically), one ``hex  path`` a line."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p != listing):
        with open(path, "rb") as f:
            lines.append(f"{hashlib.file_digest(f, 'sha256').hexdigest()}  {path.relative_to(folder).as_posix()}\n")
    with atomic_path(listing) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")
    return listing


def verify_digests(folder: Path, listing: Path) -> tuple[Path, str] | None:
    """The first file under ``folder`` that differs from ``listing`` (path, what is wrong), or None.

    No ``listing`` (a save from before digests, or one cut short before them): nothing to compare, None.
    """
    try:
        text = listing.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return listing, f"unreadable digest list ({exc})"
    for number, line in enumerate(text.splitlines(), start=1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or name.startswith("/") or ".." in Path(name).parts:
            return listing, f"line {number} is not '<sha256>  <file>' (edited?)"
        path = folder / name
        try:
            with open(path, "rb") as f:
                actual = hashlib.file_digest(f, "sha256").hexdigest()
        except FileNotFoundError:
            return path, "missing"
        except OSError as exc:
            return path, f"unreadable ({exc.strerror or exc})"
        if actual != digest:
            return path, "does not match the digest written when it was saved (truncated or edited)"
    return None


def checkpoint_dirs(run_dir: str | os.PathLike) -> dict[int, Path]:
    """Step -> folder of each complete checkpoint of ``run_dir`` (orbax's temporary folders left out)."""
    import orbax.checkpoint as ocp

    root = Path(run_dir).expanduser() / "checkpoints"
    return {step: root / str(step) for step in sorted(ocp.utils.checkpoint_steps(root))} if root.is_dir() else {}


def _damage(step: int, step_dir: Path, exc: BaseException) -> NstjaxError:
    """orbax's or tensorstore's error on reading checkpoint ``step`` as one line naming the damaged file."""
    text = _chain_text(exc)
    damaged = _damaged_file(step_dir, text)
    return NstjaxError(
        f"checkpoint of step {step} is damaged ({text[:160]}); delete {step_dir} to resume from the "
        "checkpoint before it", damaged or step_dir,
    )  # fmt: skip


def verify_checkpoint(run_dir: str | os.PathLike, step: int) -> int:
    """Check checkpoint ``step`` of ``run_dir``: its digests, then every array read back (NumPy, on the host).

    Returns the number of arrays read.

    Raises:
      NstjaxError: one line naming the step and the damaged file.
    """
    import numpy as np
    import orbax.checkpoint as ocp

    step_dir = Path(run_dir).expanduser().resolve() / "checkpoints" / str(step)
    bad = verify_digests(step_dir, step_dir / DIGESTS_NAME)
    if bad is not None:
        raise NstjaxError(f"checkpoint of step {step}: {bad[1]}", bad[0])
    item = step_dir / "default"
    quiet = logging.getLogger("absl")  # orbax logs "Metadata file does not exist" for a sound checkpoint too
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        checkpointer = ocp.PyTreeCheckpointer()
        meta = checkpointer.metadata(item)
        tree = getattr(meta, "item_metadata", meta)
        tree = getattr(tree, "tree", tree)
        if tree is None:
            raise ValueError("no readable _METADATA")
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        arrays = jax.tree.leaves(checkpointer.restore(item, args=ocp.args.PyTreeRestore(restore_args=args)))
    except Exception as exc:  # noqa: BLE001 - orbax and tensorstore raise many kinds for a bad folder
        raise _damage(step, step_dir, exc) from None
    finally:
        quiet.setLevel(level)
    return len(arrays)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _abstract(tree: Any) -> Any:
    """Shapes, dtypes and shardings of ``tree``: what orbax restores into."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
    )


class RunDir:
    """One training run on disk. Create it with :meth:`open`.

    Attributes:
      path: the run directory (absolute).
      config: the run's settings as JSON data.
      primary: whether this process writes the plain files (config, metrics, export):
        always in one process, process 0 of several.
    """

    def __init__(self, path: Path, config: dict[str, Any], keep: int):
        self.path = path
        self.config = config
        self.keep = keep
        self.primary = is_primary()
        self._manager = None

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        config: Mapping[str, Any],
        *,
        resume: bool,
        may_change: Sequence[str] = (),
        keep: int = 3,
    ) -> RunDir:
        """Start a run in ``path``, or (``resume``) continue the one there.

        A new run needs an empty or missing directory. A resumed run needs the
        same settings as the stored ``config.json``, except the dotted keys in
        ``may_change`` (e.g. ``"train.steps"`` to train longer); the stored
        config is then updated with them.

        Raises:
          NstjaxError: a new run in a directory that holds one; ``resume`` with no
            run there; settings that differ from the stored run's (each listed).
        """
        path = Path(path).expanduser().resolve()
        config = json.loads(json.dumps(config))  # plain JSON data: tuples become lists, as when read back
        stored_path = path / CONFIG_NAME
        if resume:
            if not stored_path.exists():
                raise NstjaxError("no run to resume here (no config.json); start one without --resume", path)
            stored = read_json(stored_path)
            old, new = _flatten(stored), _flatten(config)
            diffs = [
                f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(old.keys() | new.keys())
                if old.get(k) != new.get(k) and k not in may_change
            ]
            if diffs:
                raise NstjaxError(
                    "cannot resume with different settings (" + "; ".join(diffs) + "); use the run's settings or a new RUN_DIR",
                    path,
                )
        elif path.exists() and any(path.iterdir()):
            if stored_path.exists() or (path / "checkpoints").exists():
                raise NstjaxError("already holds a run; add --resume to continue it, or choose a new RUN_DIR", path)
            raise NstjaxError("is not empty; choose a new or empty RUN_DIR", path)
        # Several processes: all check the directory before the primary writes into it.
        barrier("nstjax.rundir.checked")
        if is_primary():
            try:
                path.mkdir(parents=True, exist_ok=True)
                write_json(stored_path, config)
            except OSError as exc:
                raise NstjaxError(f"cannot write the run directory ({exc.strerror or exc})", path) from None
        barrier("nstjax.rundir.written")
        return cls(path, config, keep)

    # ----------------------------------------------------------------- checkpoints

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def _checkpoint_manager(self):
        if self._manager is None:
            import orbax.checkpoint as ocp

            # cleanup_tmp_directories: a save that a crash cut short leaves a temporary folder; remove it.
            options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True, cleanup_tmp_directories=True)
            self._manager = ocp.CheckpointManager(self.checkpoints, options=options)
        return self._manager

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        if not self.checkpoints.exists():
            return None
        return self._checkpoint_manager().latest_step()

    def save(self, step: int, state: Any, *, wait: bool = False) -> None:
        """Checkpoint the whole train ``state`` after ``step`` (asynchronously unless ``wait``)."""
        import orbax.checkpoint as ocp

        manager = self._checkpoint_manager()
        if step in manager.all_steps():
            return
        with _disk_errors(self.checkpoints / str(step)):  # also the previous save's error, reported now
            manager.wait_until_finished()  # (manager.save would wait for the previous save too)
            self._seal()
            manager.save(step, args=ocp.args.StandardSave(state), force=True)
            faults.point("checkpoint-save")  # the write is in flight, in orbax's temporary folder
            if wait:
                manager.wait_until_finished()

    def restore(self, like: Any, step: int | None = None) -> Any:
        """The train state of checkpoint ``step`` (default: the latest), shaped and placed like ``like``."""
        import orbax.checkpoint as ocp

        manager = self._checkpoint_manager()
        step = manager.latest_step() if step is None else step
        if step is None:
            raise NstjaxError("holds no checkpoint to resume from", self.checkpoints)
        step_dir = self.checkpoints / str(step)
        bad = verify_digests(step_dir, step_dir / DIGESTS_NAME)
        if bad is not None:
            raise NstjaxError(f"checkpoint of step {step}: {bad[1]}; delete {step_dir} to resume from the "
                              "checkpoint before it", bad[0])  # fmt: skip
        try:
            return manager.restore(step, args=ocp.args.StandardRestore(_abstract(like)))
        except Exception as exc:  # noqa: BLE001 - orbax and tensorstore raise many kinds for a bad folder
            text = _chain_text(exc)
            if _damaged_file(step_dir, text) is None and isinstance(exc, ValueError | KeyError | TypeError):
                raise NstjaxError(f"checkpoint {step} does not fit this model ({text[:300]})", step_dir) from None
            raise _damage(step, step_dir, exc) from None

    def resume(self, like: Any) -> Any:
        """The latest checkpoint's train state (shaped and placed like ``like``), ready to continue.

        Metrics logged after that checkpoint (by the interrupted run) are dropped, since
        the resumed run logs those steps again. ``like.step`` must be the step count.
        """
        state = self.restore(like)
        self.drop_metrics_after(int(to_host(state.step)))
        return state

    def wait(self) -> None:
        """Block until every asynchronous checkpoint save has finished (and write their digests)."""
        if self._manager is not None:
            with _disk_errors(self.checkpoints):
                self._manager.wait_until_finished()
                self._seal()

    def _seal(self) -> None:
        """Write the digest list of each finished checkpoint that has none (the primary process; after a wait)."""
        if not self.primary:
            return
        for step_dir in checkpoint_dirs(self.path).values():
            if not (step_dir / DIGESTS_NAME).exists():
                write_digests(step_dir, step_dir / DIGESTS_NAME)

    def close(self) -> None:
        if self._manager is not None:
            manager, self._manager = self._manager, None
            try:
                with _disk_errors(self.checkpoints):
                    manager.wait_until_finished()
                    self._seal()
            finally:
                manager.close()

    # ----------------------------------------------------------------- export

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    def export(self, params: Any, config: Mapping[str, Any]) -> Path:
        """Write the inference export: ``params`` (the generator's) and ``config`` (what inference needs).

        Replaces an earlier export only once the new one is complete. Every process
        calls it; the primary one writes.
        """
        import orbax.checkpoint as ocp

        target = self.export_dir
        params = to_host(params)  # host copies: the export is device-independent
        if not self.primary:
            return target
        # The primary process alone: orbax must not wait for the others at its barriers.
        checkpointer = ocp.StandardCheckpointer(
            multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
        ) if multi_process() else ocp.StandardCheckpointer()
        staging = self.path / ".export.new"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with _disk_errors(target):
                checkpointer.save(staging / "params", params)
                checkpointer.wait_until_finished()
                write_digests(staging / "params", staging / "params.sha256")
                write_json(staging / CONFIG_NAME, dict(config))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # a failed export leaves the previous one alone
            raise
        faults.point("export")  # complete but not in place: the previous export is still the one
        # Two renames: the complete new export replaces the old one, which is removed last.
        old = self.path / ".export.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
        return target

    # ----------------------------------------------------------------- metrics and samples

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one metrics record (a JSON line, flushed; by the primary process)."""
        if not self.primary:
            return
        # A line torn by a crash or a full disk is skipped by read_metrics, and a resume rewrites the file.
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(dict(record), sort_keys=True) + "\n")
                f.flush()
        except OSError as exc:
            if no_space_left(exc):
                raise NoSpaceLeft(self.metrics_path) from None
            raise

    def drop_metrics_after(self, step: int) -> None:
        """Forget records logged after ``step`` (a resumed run replays those steps)."""
        if not self.primary:
            return
        records = [r for r in read_metrics(self.metrics_path) if r["step"] <= step]
        if self.metrics_path.exists():
            with atomic_path(self.metrics_path) as tmp:
                tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")

    def metrics(self) -> list[dict]:
        return read_metrics(self.metrics_path)

    def last_metrics(self) -> dict[str, float]:
        """The last logged record without its ``step`` and ``time``: loss terms, rates (empty before a log)."""
        records = self.metrics()
        return {k: v for k, v in (records[-1] if records else {}).items() if k not in ("step", "time")}

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"


def load_export(run_dir: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """(generator params as NumPy arrays, config) of a run's inference export.

    ``run_dir`` may be the run directory or its ``export/`` folder.

    Raises:
      NstjaxError: no export there (e.g. a run that has not saved one yet), or damaged.
    """
    import orbax.checkpoint as ocp

    path = Path(run_dir).expanduser().resolve()
    if (path / "export").is_dir():
        path = path / "export"
    if not (path / CONFIG_NAME).exists() or not (path / "params").exists():
        raise NstjaxError("no trained model here (expected RUN_DIR/export/ with params and config.json)", run_dir)
    config = read_json(path / CONFIG_NAME)
    bad = verify_digests(path / "params", path / "params.sha256")
    if bad is not None:
        raise NstjaxError(f"exported parameters: {bad[1]}", bad[0])
    try:
        params = ocp.StandardCheckpointer().restore(path / "params")
    except Exception as exc:  # noqa: BLE001 - orbax raises many kinds for a damaged folder
        raise NstjaxError(f"cannot read the exported parameters ({' '.join(str(exc).split())[:200]})", path) from None
    return params, config
