"""GAN train steps per second for ``bench_device.sh``: CycleGAN and SPADE/pix2pix, each against its reference.

    python scripts/bench_gan.py --out gan.json            # accelerator sizes (256 px)
    python scripts/bench_gan.py --smoke --out gan.json    # tiny, end to end (numbers mean nothing)

Runs ``bench_cyclegan.py`` and ``bench_sketch2photo.py`` one after the other (each
interleaves nstjax with its PyTorch reference in its own run) and writes their rows
together: ``{"rows": [{"model", "impl", "size", "batch", "dtype", "steps_per_s", ...}]}``.
A script that fails leaves a row saying so instead of stopping the other.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _commands(smoke: bool, out: Path) -> dict[str, list[str]]:
    if smoke:
        return {
            "cyclegan": ["bench_cyclegan.py", "--smoke", "--out", str(out / "cyclegan.json")],
            "sketch2photo": ["bench_sketch2photo.py", "--smoke", "--out", str(out / "sketch2photo.json")],
        }
    return {
        # the paper's model at 256 px, batch 1 (as CycleGAN trains)
        "cyclegan": ["bench_cyclegan.py", "--sizes", "256", "--repeats", "3", "--steps", "5",
                     "--out", str(out / "cyclegan.json")],
        "sketch2photo": ["bench_sketch2photo.py", "--size", "256", "--batch", "8", "--ngf", "64", "--ndf", "64",
                         "--steps", "5", "--rounds", "3", "--out", str(out / "sketch2photo.json")],
    }  # fmt: skip


# What the non-smoke commands run, for rows that do not say it themselves.
_DEFAULTS = {"cyclegan": {"size": 256, "batch": 1}, "sketch2photo": {"size": 256, "batch": 8, "dtype": "float32"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, command in _commands(args.smoke, Path(tmp)).items():
            done = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], check=False)
            result_file = Path(command[-1])
            if done.returncode != 0 or not result_file.exists():
                rows.append({"model": name, "impl": "failed", "returncode": done.returncode})
                continue
            defaults = _DEFAULTS[name] if not args.smoke else {}
            for row in json.loads(result_file.read_text())["rows"]:
                rows.append({"model": name, **defaults, **row})
    args.out.write_text(json.dumps({"smoke": args.smoke, "rows": rows}, indent=2, default=str) + "\n")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
