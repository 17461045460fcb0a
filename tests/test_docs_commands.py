"""The docs checked against the code: every command block of README.md and docs/*.md runs and writes what it names.

The machinery is scripts/newcomer.py (the recorded newcomer run), one implementation for both:
it reads each doc's shell and Python blocks, sets the size flags to tiny values (``--size 32``,
``--steps 2``, ``--epochs 1``, ``--count 4`` …: the rules are its TINY/CAPPED tables and docstring,
and README's *Tests* section), gives placeholder inputs (``photo.jpg``, ``holiday/``, ``$VG`` …) small
copies of ../shared/images, runs each command in a work folder that looks like a fresh clone, and
checks the files it names (``-o``, ``--run``, ``--stages``, ``--out``, ``data synth``'s folder …)
exist and decode. Weights stay as the docs write them: ``auto`` is the real ImageNet VGG-16.
Commands that cannot run here (downloads, installs, servers, benchmarks, GPU-only recipes) are in
its SKIPS list, each with a reason; a stale entry fails :func:`test_skips_all_match_a_doc_command`.

Each doc runs in a process of its own (``newcomer.py --in-process``: inside it the Typer app and Python
blocks with ``exec``, so a doc's programs compile once), in order, in its own work folder; all share one
home (the nstjax cache), so the weights are imported once.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("newcomer", REPO / "scripts" / "newcomer.py")
newcomer = importlib.util.module_from_spec(_spec)
sys.modules["newcomer"] = newcomer  # dataclasses look their module up by name
_spec.loader.exec_module(newcomer)

DOCS = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
RUNNABLE = [d for d in DOCS if d != "README.md" and any(
    newcomer.skip_for(c) is None for c in newcomer.read_commands(d))]  # fmt: skip



def test_skips_all_match_a_doc_command():
    assert newcomer.stale_skips(DOCS) == []
    assert all(skip.reason for skip in newcomer.SKIPS)


def test_every_doc_with_blocks_is_read():
    # Every fenced shell block of every doc yields commands (a fence the reader missed would go unchecked).
    for doc in DOCS:
        text = (REPO / doc).read_text(encoding="utf-8")
        shell_fences = sum(text.count(f"```{lang}\n") for lang in newcomer.SHELL_LANGS)
        blocks = {c.line for c in newcomer.read_commands(doc) if not c.python}
        assert shell_fences == 0 or blocks, doc


def test_the_rewrite_changes_only_sizes(tmp_path):
    tiny = newcomer.tiny_shell
    assert tiny("nstjax stylize a.png b.jpg -o out.png --size 768 --preserve-color luminance", tmp_path) == (
        "nstjax stylize a.png b.jpg -o out.png --size 32 --preserve-color luminance --steps 2")
    # three scales halve the size twice: the coarsest stays 32 px
    assert "--size 128 --scales 3" in tiny("nstjax stylize a b -o o.png --size 768 --scales 3", tmp_path)
    run = tiny("nstjax cyclegan train A B --run r --epochs 200 --batch-size 8 --sample-every 1000 --ngf 16", tmp_path)
    assert run == "nstjax cyclegan train A B --run r --epochs 1 --batch-size 2 --sample-every 1000 --ngf 16 --size 32"
    run = tiny("nstjax fast train --style s.jpg --data d --run r --steps 1800 --sample-every 150", tmp_path)
    assert run == "nstjax fast train --style s.jpg --data d --run r --steps 2 --sample-every 2 --size 32"
    assert tiny("nstjax data synth /tmp/s --count 200 --size 72", tmp_path) == (
        f"nstjax data synth {tmp_path}/tmp/s --count 4 --size 48")
    assert tiny('nstjax stylize a b -o o.png --region-styles "#87ceeb:0"', tmp_path).startswith(
        'nstjax stylize a b -o o.png --region-styles "#87ceeb:0" --size 32')
    assert newcomer.tiny_python('nstjax.stylize("p.jpg", "a.jpg", size=512)  # size=512') == (
        'nstjax.stylize("p.jpg", "a.jpg", size=32, steps=2)  # size=32')
    assert newcomer.tiny_python('run_stylize("p.jpg", ["a.jpg"], config=preset("fast"), blend=(1,))') == (
        'run_stylize("p.jpg", ["a.jpg"], config=preset("fast", size=32, steps=2), blend=(1,))')
    assert newcomer.tiny_python("synth(seed=0, size=128); write(count=100, size=128)") == (
        "synth(seed=0, size=32); write(count=4, size=32)")
    assert newcomer.strip_comment('nstjax x --r "#a:0" # note') == 'nstjax x --r "#a:0"'


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("docs")


def run_newcomer(root: Path, name: str, doc: str) -> subprocess.CompletedProcess:
    # A process per doc (its commands in-process inside it, sharing compiled programs): the memory of a
    # doc's compiled programs goes with it, and the test process stays small for the rest of the suite.
    # All docs share one home (nstjax cache) under root, filled by the first.
    return subprocess.run([sys.executable, str(REPO / "scripts" / "newcomer.py"), "--in-process", "--workdir",
                           str(root), "--name", name, doc], capture_output=True, text=True, timeout=1800)  # fmt: skip


@pytest.mark.parametrize("doc", RUNNABLE)
def test_doc_commands_run_and_write_what_they_name(doc, root):
    done = run_newcomer(root, Path(doc).stem, doc)
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    assert "commands ran" in done.stdout and " 0 commands ran" not in done.stdout, done.stdout[-2000:]


def test_newcomer_run_of_readme(root):
    # The recorded newcomer run: README's commands in order, the recreate example included.
    done = run_newcomer(root, "newcomer", "README.md")
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    assert "nstjax recreate" in done.stdout and (root / "newcomer" / "wild.png").is_file()  # recreate ran
