#!/usr/bin/env bash
# `make bench-gpu` on a CUDA machine that cannot reach a package index (as this project's lent
# GPU machines): carry, as wheels, what such a machine lacks beyond torch, transformers,
# accelerate, peft, triton, pandas, scipy, matplotlib and pyarrow.
#
#   bash bench/device.sh fetch [3.12]   # here, with pip online: wheels for that Python into .whl/
#   bash bench/device.sh run            # there: install .whl/ into $SITE (/tmp/site), run both GPU benches
#   bash bench/device.sh rehearse       # here, no GPU: `run` under that machine's Python and library
#                                       # versions, on the tiny shape, Liger in Triton's CPU interpreter
#
# `run` writes gpu_train.json and gpu_eval.json into $OUT when set (the device tool brings that
# folder back), else results/bench/. TRAIN_ARGS / EVAL_ARGS pass options to the two scripts
# (e.g. TRAIN_ARGS="--settings limo_16k,trl_16k --rounds 1"); ONLY=train or ONLY=eval runs one of
# the two; TRAIN_LIMIT / EVAL_LIMIT (seconds) stop a bench that runs long: 540 each when ONLY is
# set, 270 + 300 when both run, so that one call ends inside a 10-minute limit. Both benches write
# their file after every setting, so a stopped bench keeps what it measured; the training bench
# also gets --budget (its limit less 30 s) and skips a setting it expects to end past it. With
# one ~10-minute call: `bash bench/device.sh run` (training's target settings first, then the
# eval workloads: compiled vs eager on equal and varied lengths); with two calls, ONLY=train
# (the target settings twice, the others once) then ONLY=eval. `rehearse` builds
# (once) a Python 3.12 venv of the image's versions in $REHEARSE_VENV (../device-rehearsal) and
# writes into its out/ (~10 minutes on 2 cores; only fp32 results count in the interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."

# pinned as in constraints.txt; what the benches import, and what those import
WHEELS=(
  trl==1.16.0 liger-kernel==0.8.5 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  hydra-core==1.3.8 omegaconf==2.3.1 lm-eval==0.4.13 evaluate==0.4.6 math-verify==0.9.0
  latex2sympy2_extended==1.11.0 more-itertools==11.2.1 pytablewriter==1.2.1 DataProperty==1.1.1
  mbstrdecoder==1.1.5 pathvalidate==3.3.1 tabledata==1.3.5 tcolorpy==0.1.7 typepy==1.3.5
  chardet==6.0.0.post1 nltk==3.10.4
)
SDISTS=(antlr4-python3-runtime==4.9.3 rouge_score==0.1.2 sqlitedict==2.1.0 word2number==1.1)
# what the lent machine's image has that the benches use (versions as its pip list showed them,
# 2026-11; torch is the CUDA build, which imports on a machine without a GPU)
IMAGE=(
  torch==2.11.0 triton==3.6.0 transformers==5.17.0 accelerate==1.15.0 numpy==2.5.2
  huggingface_hub==1.33.0 tokenizers==0.23.2 safetensors==0.8.0 peft pandas scipy matplotlib pyarrow
  sympy jinja2 pyyaml regex requests tqdm psutil filelock fsspec xxhash aiohttp httpx sacrebleu
  sentencepiece scikit-learn tabulate portalocker colorama lxml
)

case "${1:-}" in
fetch)
  py="${2:-3.12}"
  rm -rf .whl  # one version of each: two wheels of a package stop the whole install there
  mkdir -p .whl
  grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  python3 -m pip wheel -q --no-deps -w .whl "${SDISTS[@]}"  # pure Python, built here
  du -sh .whl
  ;;
run)
  test -n "$(ls .whl/*.whl 2>/dev/null)" || { echo "no .whl/: run 'bash bench/device.sh fetch' first and carry .whl" >&2; exit 2; }
  site="${SITE:-/tmp/site}"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
  out="${OUT:-results/bench}"
  mkdir -p "$out"
  # what the machine has, and whether the carried packages import on it (a failure is printed, not fatal)
  python3 - <<'PY' || true
import importlib, importlib.metadata as md
for name in ("torch", "transformers", "accelerate", "huggingface-hub", "pyarrow", "fsspec", "triton"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "MISSING")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for module in ("datasets", "trl", "lm_eval.tasks", "liger_kernel.transformers.monkey_patch", "math_verify"):
    try:
        importlib.import_module(module)
        print("import", module, "ok")
    except Exception as e:
        print("import", module, "FAILED:", type(e).__name__, e)
PY
  only="${ONLY:-}"
  if [ -n "$only" ]; then one=540; else one=""; fi
  if [ "$only" != eval ]; then
    # shellcheck disable=SC2086
    limit="${TRAIN_LIMIT:-${one:-270}}"
    timeout "$limit" python3 bench/bench_gpu_train.py --out "$out/gpu_train.json" --budget $((limit - 30)) ${TRAIN_ARGS:-} || echo "bench_gpu_train.py: exit $?" >&2
  fi
  if [ "$only" != train ]; then
    # shellcheck disable=SC2086
    timeout "${EVAL_LIMIT:-${one:-300}}" python3 bench/bench_gpu_eval.py --out "$out/gpu_eval.json" ${EVAL_ARGS:-} || echo "bench_gpu_eval.py: exit $?" >&2
  fi
  ;;
rehearse)
  # a venv of the image's versions (once: ~4 GB with torch's CUDA libraries), Python 3.12 as there
  venv="${REHEARSE_VENV:-../device-rehearsal}"
  if [ ! -e "$venv/.installed" ]; then  # the marker: a build that stopped half-way is built again
    py="${PYTHON312:-python3.12}"
    # a pyenv shim for a version that is installed but not selected fails: take pyenv's own copy
    "$py" -V >/dev/null 2>&1 || py="$(ls -d "$(pyenv root 2>/dev/null || echo ~/.pyenv)"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1)"
    test -n "$py" || { echo "no Python 3.12: set PYTHON312" >&2; exit 2; }
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q "${IMAGE[@]}"
    touch "$venv/.installed"
  fi
  # Triton's interpreter needs numpy < 2.4 (bench/triton_interpret.py): first on the path, here only
  test -d "$venv/numpy-2.3" || "$venv/bin/pip" install -q --no-deps --target "$venv/numpy-2.3" numpy==2.3.5
  test -n "$(ls .whl/*.whl 2>/dev/null)" || bash "$0" fetch 3.12
  mkdir -p "$venv/out"
  # the interpreter runs Triton's kernels in numpy: minutes for the tiny shape, hence the limits
  # the carried wheels go into the venv's own site/: a shared /tmp/site may be another run's
  PATH="$venv/bin:$PATH" PYTHONPATH="$venv/numpy-2.3" TRITON_INTERPRET=1 OUT="${OUT:-$venv/out}" SITE="$venv/site" \
    TRAIN_LIMIT="${TRAIN_LIMIT:-1500}" EVAL_LIMIT="${EVAL_LIMIT:-600}" \
    TRAIN_ARGS="${TRAIN_ARGS:---shape tiny --seq 256 --steps 2 --rounds 1}" \
    EVAL_ARGS="${EVAL_ARGS:---shape tiny --batches 2 --limit 2 --max-gen-toks 8 --equal-prompts 4 --equal-new 8 --varied-prompts 8 --varied-median 8 --varied-cap 32}" bash "$0" run
  ;;
*)
  sed -n '2,21p' "$0" >&2
  exit 2
  ;;
esac
