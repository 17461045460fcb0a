#!/usr/bin/env bash
# The accelerator tables of docs/benchmarks.md in one run, within a time budget (470 s < 8 min; smoke: 900 s).
#
#   scripts/bench_device.sh [--out DIR] [--budget SECONDS] [--smoke]
#
# On a machine whose JAX sees a GPU or TPU (jax[cuda12] / jax[tpu]; torch with CUDA for the reference) it
# writes to DIR (default bench_device_out/):
#   device.json            what ran: JAX devices, torch device, versions, nvidia-smi, load average
#   speed.json / .md       512 and 1024 px, float32 and bfloat16: evaluations/s of one value-and-gradient,
#                          Adam steps and L-BFGS steps, nstjax against the reference's fastest setting
#                          (NCHW or channels_last) in the same interleaved run; GFLOP/s against the datasheet
#                          peak; nstjax's first-call (compile) times
#   batch.json             images/s of stylize-batch for several batch sizes (512 px, Adam)
#   fit.json               the largest square image whose L-BFGS chunk fits in device memory (compile only)
#   compile.json / .md     run_stylize's compile time with a cold and a warm persistent cache, peak memory
#   gan.json               GAN train steps/s: CycleGAN and SPADE/pix2pix vs their references (bench_gan.py)
#   summary.json / .md     everything above in one place, with each step's status and seconds
# Steps run in order of importance; each gets at most what is left of the budget, and a step that would
# start with less than its minimum is skipped (and says so in summary.md).
#
# --smoke: the CPU fallback at tiny sizes (64/96 px, short runs) to check the script end to end on a
# machine without an accelerator; its numbers mean nothing.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT=bench_device_out
BUDGET=
SMOKE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
# The real run must finish within 8 minutes; the smoke run on a shared CPU may take longer.
if [[ -z "$BUDGET" ]]; then if (( SMOKE )); then BUDGET=900; else BUDGET=470; fi; fi
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$OUT/logs"
START=$(date +%s)
STATUS="$OUT/status.tsv"
: > "$STATUS"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME MIN_SECONDS MAX_SECONDS COMMAND...: run COMMAND with a timeout of min(MAX, what is left - 10 s).
step() {
  local name=$1 min=$2 max=$3; shift 3
  local remaining; remaining=$(( $(left) - 10 ))
  if (( remaining < min )); then
    printf '%s\tskipped\t0\tonly %ss left of the budget (needs %ss)\n' "$name" "$remaining" "$min" >> "$STATUS"
    echo "== $name: skipped (only ${remaining}s left)"
    return
  fi
  local limit=$(( remaining < max ? remaining : max ))
  echo "== $name (at most ${limit}s)"
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  local rc=$?
  local took=$(( $(date +%s) - t0 ))
  local what=ok
  if (( rc == 124 || rc == 137 )); then what="timed out after ${limit}s"; elif (( rc != 0 )); then what="failed (exit $rc)"; fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$what" "$took" "log: logs/$name.log" >> "$STATUS"
  echo "   $what in ${took}s"
  tail -n 3 "$OUT/logs/$name.log" | sed 's/^/   | /'
}

# ---------------------------------------------------------------------------------------------- the device
"$PY" - "$OUT" "$SMOKE" > "$OUT/logs/device.log" 2>&1 <<'EOF'
import json, os, shutil, subprocess, sys
out, smoke = sys.argv[1], sys.argv[2] == "1"
import jax
info = {"jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind, "load_average": os.getloadavg(), "smoke": smoke}
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["torch_device"] = torch.cuda.get_device_name(0)
except ImportError:
    info["torch"] = None
    info["torch_cuda"] = False
if shutil.which("nvidia-smi"):
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                         "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
json.dump(info, open(os.path.join(out, "device.json"), "w"), indent=2)
print(json.dumps(info))
if info["jax_backend"] == "cpu" and not smoke:
    print("JAX sees no GPU/TPU (install jax[cuda12] or jax[tpu]); use --smoke for the CPU check", file=sys.stderr)
    sys.exit(3)
EOF
rc=$?
cat "$OUT/logs/device.log"
if (( rc != 0 )); then exit "$rc"; fi
BACKEND=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['jax_backend'])" "$OUT/device.json")
TORCH_CUDA=$("$PY" -c "import json,sys; print(int(bool(json.load(open(sys.argv[1]))['torch_cuda'])))" "$OUT/device.json")

# The reference runs where torch can: on CUDA next to a GPU; on the CPU only in the smoke run (a CPU reference
# against a GPU would time nothing useful).
REF_LAYOUTS="nchw,channels-last"
if [[ "$BACKEND" != "cpu" && "$TORCH_CUDA" != "1" ]]; then REF_LAYOUTS=""; fi

if (( SMOKE )); then
  # Tiny, and no bfloat16 reference (torch's autocast is emulated on most CPUs, ~30x slower).
  SIZES=32,48; REPEATS=2; MIN_TIME=0.05; REF_BF16_MAX=0; BATCH_SIZE=32; BATCH_SIZES=1,2; BATCH_STEPS=2
  FIT_STEP=64; FIT_LIMIT=256; FIT_COMPILES=2; COMPILE_SIZE=32; SPEED_MAX=500
else
  SIZES=512,1024; REPEATS=3; MIN_TIME=0.5; REF_BF16_MAX=100000; BATCH_SIZE=512; BATCH_SIZES=1,4,8; BATCH_STEPS=10
  FIT_STEP=512; FIT_LIMIT=16384; FIT_COMPILES=5; COMPILE_SIZE=512; SPEED_MAX=300
fi

# Each Python step keeps its persistent compilation cache to itself (compile times stay honest).
export NSTJAX_CACHE="$OUT/cache"

# ----------------------------------------------------------------------------------------- 1. throughput
step speed 60 "$SPEED_MAX" "$PY" scripts/bench_speed.py --sizes "$SIZES" --repeats "$REPEATS" --min-time "$MIN_TIME" \
  --modes eval,adam,lbfgs --bf16-modes eval,adam,lbfgs --reference-layouts "$REF_LAYOUTS" \
  --reference-bf16-max-size "$REF_BF16_MAX" --no-subprocess --out "$OUT/speed.json" --md "$OUT/speed.md"

# ------------------------------------------------------------------------------------- 2. batch images/s
# nstjax.nst.batch.stylize_images (Adam, early stop off) per batch size: a 1-step call of the same batch
# size first (it compiles the program: "warmup_1_step_s"), then the timed call.
cat > "$OUT/logs/batch.py" <<'PYBATCH'
import json, sys, time
import numpy as np
sys.path.insert(0, "scripts")
import _bench_common as bc
from nstjax.weights import random_weights
from nstjax.nst.batch import stylize_images
from nstjax.nst.config import preset
out, size, steps, sizes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(b) for b in sys.argv[4].split(",")]
weights = random_weights(0)
content, style, what = bc.square_pair(size)
rng = np.random.default_rng(0)
contents = [np.clip(content + 0.05 * rng.standard_normal(content.shape), 0, 1).astype(np.float32)
            for _ in range(max(sizes))]
config = preset("gatys", size=size, steps=steps, optimizer="adam", tolerance=0.0)
rows = []
for b in sizes:
    t0 = time.perf_counter()
    stylize_images(contents[:b], style, weights=weights, config=config.replace(steps=1), batch_size=b)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = stylize_images(contents[:b], style, weights=weights, config=config, batch_size=b)
    wall = time.perf_counter() - t0
    rows.append(dict(size=size, batch=b, steps=steps, images_per_s=b / wall, wall_s=wall, warmup_1_step_s=warm,
                     steps_run=sorted({r.steps for r in results})))
    print(rows[-1], flush=True)
json.dump({"images": what, "optimizer": "adam", "rows": rows}, open(out, "w"), indent=2)
PYBATCH
step batch 30 90 "$PY" "$OUT/logs/batch.py" "$OUT/batch.json" "$BATCH_SIZE" "$BATCH_STEPS" "$BATCH_SIZES"

# --------------------------------------------------------------------------- 3. the largest size that fits
step fit 30 90 "$PY" scripts/bench_scale.py fit --step "$FIT_STEP" --limit "$FIT_LIMIT" \
  --max-compiles "$FIT_COMPILES" --modes float32/none,bfloat16/none --rss-size 0 --out "$OUT/fit.json"

# ----------------------------------------------------------- 4. compile time (cold / warm cache), memory
# float32 only (the throughput step already timed every program's first call, bfloat16 included).
step compile 40 150 "$PY" scripts/bench_speed.py --sizes "$COMPILE_SIZE" --no-throughput --bf16-modes "" \
  --reference-layouts nchw --out "$OUT/compile.json" --md "$OUT/compile.md"

# ------------------------------------------------------------------------ 5. GAN train steps per second
# scripts/bench_gan.py: CycleGAN and SPADE/pix2pix against their references; writes
# {"rows": [{"model", "impl", "size", "batch", "dtype", "steps_per_s", ...}, ...]}.
if [[ -f scripts/bench_gan.py ]]; then
  GAN_ARGS=(--out "$OUT/gan.json"); if (( SMOKE )); then GAN_ARGS+=(--smoke); fi
  step gan 30 150 "$PY" scripts/bench_gan.py "${GAN_ARGS[@]}"
else
  echo '{"rows": [], "note": "hook: scripts/bench_gan.py does not exist yet"}' > "$OUT/gan.json"
  printf 'gan\tnot available\t0\thook: scripts/bench_gan.py does not exist yet\n' >> "$STATUS"
fi

# ------------------------------------------------------------------------------------------- summary
"$PY" - "$OUT" "$(( $(date +%s) - START ))" "$BUDGET" <<'EOF'
import json, os, sys
out, took, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except (OSError, ValueError):
        return None
def text(name):
    try:
        return open(os.path.join(out, name)).read().strip()
    except OSError:
        return None
status = [line.rstrip("\n").split("\t") for line in open(os.path.join(out, "status.tsv")) if line.strip()]
device = load("device.json") or {}
summary = {"device": device, "seconds": took, "budget_s": budget, "steps": status}
md = [f"# Device benchmark: {device.get('device_kind', '?')} ({device.get('jax_backend', '?')})"
      + (" — SMOKE RUN on CPU at tiny sizes: the numbers mean nothing" if device.get("smoke") else ""), "",
      f"{took} s of a {budget} s budget; JAX devices {', '.join(device.get('jax_devices', []))}; torch "
      f"{device.get('torch')} (CUDA: {device.get('torch_cuda')}).", "",
      "| step | status | seconds | note |", "|---|---|---:|---|"]
md += [f"| {' | '.join(row)} |" for row in status]
speed = text("speed.md")
if speed:
    md += ["", "## Throughput (evaluations per second)", "", speed]
batch = load("batch.json")
if batch:
    summary["batch"] = batch
    rows = batch.get("rows") or batch.get("results") or []
    md += ["", "## Batch throughput", ""]
    md += ["| size | batch | Adam steps | images/s | wall | 1-step warm-up (compile) |", "|---:|---:|---:|---:|---:|---:|"]
    md += [f"| {r['size']} | {r['batch']} | {r['steps']} | {r['images_per_s']:.3f} | {r['wall_s']:.1f} s | "
           f"{r['warmup_1_step_s']:.1f} s |" for r in rows]
fit = load("fit.json")
if fit:
    summary["fit"] = fit
    f = fit.get("fit", fit)
    md += ["", "## Largest square image that fits (compile only: XLA's buffer assignment of the L-BFGS chunk)", "",
           f"Device memory available: {f.get('available_bytes', 0) / 2**30:.1f} GiB; searched in steps of "
           f"{f.get('step')} px up to {f.get('limit')} px.", "",
           "| dtype | remat | largest fitting | smallest failing | XLA bytes there | estimator's largest |",
           "|---|---|---:|---:|---:|---:|"]
    for m in f.get("modes", []):
        gib = (m.get("xla_bytes_at_largest") or 0) / 2**30
        md.append(f"| {m.get('dtype')} | {m.get('remat')} | {m.get('largest_fitting')} | {m.get('smallest_failing')} | "
                  f"{gib:.2f} GiB | {m.get('estimator_largest_fitting')} |")
compile_md = text("compile.md")
if compile_md:
    md += ["", "## Compile time and memory", "", compile_md]
gan = load("gan.json") or {"rows": []}
summary["gan"] = gan
md += ["", "## GAN train steps per second", ""]
if gan.get("rows"):
    md += ["| model | implementation | size | batch | dtype | steps/s | vs reference |", "|---|---|---:|---:|---|---:|---:|"]
    md += [f"| {r.get('model')} | {r.get('impl')} | {r.get('size')} | {r.get('batch')} | {r.get('dtype')} | {r.get('steps_per_s')} | {r.get('vs_reference', '')} |" for r in gan["rows"]]
else:
    md += [gan.get("note", "no rows")]
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2, default=str)
open(os.path.join(out, "summary.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
echo "wrote $OUT/summary.md ($(( $(date +%s) - START )) s)"
