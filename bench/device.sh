#!/usr/bin/env bash
# The GPU benches in ONE device call (an H100 or an H200, at most 600 s a call): setup, training
# (limo-exp vs TRL) and evaluation (generation at the protocol's shapes) inside $BENCH_SECONDS
# (540). The lent machines cannot reach a package index: what they lack beyond torch,
# transformers, accelerate, peft, triton, pandas, scipy, matplotlib and pyarrow travels as wheels.
#
#   bash bench/device.sh fetch [3.12]   # here, with pip online: wheels for that Python into .whl/
#                                       # (and .whl/COMMIT: the commit the JSON files will name)
#   bash bench/device.sh run            # there: install .whl/ into $SITE (/tmp/site), run both benches
#   bash bench/device.sh rehearse       # here, no GPU: `run` under that machine's Python and library
#                                       # versions, toy sizes, the device named "H100" (faked), Liger
#                                       # in Triton's CPU interpreter, and the schedule on each device
#
# The call's seconds, from the start of `run`: setup (the wheels, an import check) as it comes,
# training until $BENCH_SECONDS - $EVAL_SECONDS (210: evaluation's share, inside 4 minutes),
# evaluation until $BENCH_SECONDS. Each bench gets --budget (its limit less a margin) and gates
# every setting / part on what it is expected to cost on this device (bench_gpu_train.py: its
# last round, measured figures, else FLOPs over the data sheet at an assumed MFU; bench_gpu_eval.py:
# each part's minimum); `timeout` stops a bench that runs past its limit. Both write their JSON
# after every setting / part into $OUT when set (the device tool brings that folder back), else
# results/bench/: gpu_train.json, gpu_eval.json and gpu_call.json (the seconds of each part).
# TRAIN_ARGS / EVAL_ARGS pass options; ONLY=train or ONLY=eval runs one of the two in the whole
# $BENCH_SECONDS (with two calls: ONLY=train, then ONLY=eval, and the training extras get run).
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
  git describe --always --dirty >.whl/COMMIT 2>/dev/null || echo unknown >.whl/COMMIT
  du -sh .whl
  ;;
run)
  test -n "$(ls .whl/*.whl 2>/dev/null)" || { echo "no .whl/: run 'bash bench/device.sh fetch' first and carry .whl" >&2; exit 2; }
  total="${BENCH_SECONDS:-540}" eval_share="${EVAL_SECONDS:-210}" only="${ONLY:-}"
  SECONDS=0
  site="${SITE:-/tmp/site}"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
  export BENCH_COMMIT="${BENCH_COMMIT:-$(git describe --always --dirty 2>/dev/null || cat .whl/COMMIT 2>/dev/null || echo unknown)}"
  out="${OUT:-results/bench}"
  mkdir -p "$out"
  # what the machine has, and whether the carried packages import on it (a failure is printed, not fatal)
  python3 - <<'PY' || true
import importlib, importlib.metadata as md
for name in ("torch", "transformers", "accelerate", "trl", "liger-kernel", "triton"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "MISSING")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for module in ("datasets", "trl", "liger_kernel.transformers.monkey_patch", "limo_exp.evaluation.generation.hf"):
    try:
        importlib.import_module(module)
        print("import", module, "ok")
    except Exception as e:
        print("import", module, "FAILED:", type(e).__name__, e)
PY
  setup=$SECONDS train_s=0 eval_s=0 train_limit=0 eval_limit=0
  echo "setup: ${setup} s of ${total}"
  if [ "$only" != eval ]; then
    if [ "$only" = train ]; then train_limit=$((total - SECONDS)); else train_limit=$((total - eval_share - SECONDS)); fi
    echo "training: ${train_limit} s (budget $((train_limit - 15)))"
    # shellcheck disable=SC2086
    timeout -k 10 "$train_limit" python3 bench/bench_gpu_train.py --out "$out/gpu_train.json" \
      --budget $((train_limit - 15)) ${TRAIN_ARGS:-} || echo "bench_gpu_train.py: exit $?" >&2
    train_s=$((SECONDS - setup))
  fi
  if [ "$only" != train ]; then
    eval_limit=$((total - SECONDS))
    echo "evaluation: ${eval_limit} s (budget $((eval_limit - 10)))"
    # shellcheck disable=SC2086
    timeout -k 10 "$eval_limit" python3 bench/bench_gpu_eval.py --out "$out/gpu_eval.json" \
      --budget $((eval_limit - 10)) ${EVAL_ARGS:-} || echo "bench_gpu_eval.py: exit $?" >&2
    eval_s=$((SECONDS - setup - train_s))
  fi
  printf '{"commit": "%s", "total_budget_s": %s, "eval_share_s": %s, "only": "%s", "setup_s": %s, "train_limit_s": %s, "train_s": %s, "eval_limit_s": %s, "eval_s": %s, "call_s": %s}\n' \
    "$BENCH_COMMIT" "$total" "$eval_share" "$only" "$setup" "$train_limit" "$train_s" "$eval_limit" "$eval_s" "$SECONDS" >"$out/gpu_call.json"
  cat "$out/gpu_call.json"
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
  out="${OUT:-$venv/out}"
  # the interpreter runs Triton's kernels in numpy: minutes for the tiny shape, hence the seconds;
  # the carried wheels go into the venv's own site/: a shared /tmp/site may be another run's
  PATH="$venv/bin:$PATH" PYTHONPATH="$venv/numpy-2.3" TRITON_INTERPRET=1 OUT="$out" SITE="$venv/site" \
    LIMO_BENCH_DEVICE="${LIMO_BENCH_DEVICE:-H100}" BENCH_SECONDS="${BENCH_SECONDS:-1200}" EVAL_SECONDS="${EVAL_SECONDS:-400}" \
    TRAIN_ARGS="${TRAIN_ARGS:---shape tiny --seq 128 --steps 2 --rounds 2}" \
    EVAL_ARGS="${EVAL_ARGS:---shape tiny --decodings static,eager --short-prompts 8 --short-new 16 --eager-prompts 4 --positions 128,512,2048 --step-batch 2 --step-lengths 4,12 --long-prompts 8 --long-min 32 --long-max 128 --prompt-tokens 16,48 --max-batch 8}" \
    bash "$0" run
  # the schedule each device would run in the real call (training's share: 540 - 210 less ~30 s
  # of setup and the 15 s margin), from the time table alone
  for dev in H100 H200; do
    PATH="$venv/bin:$PATH" PYTHONPATH="$venv/site:$PWD" "$venv/bin/python" bench/bench_gpu_train.py --plan "$dev" --budget 285 \
      >"$out/gpu_plan_$dev.json"
    "$venv/bin/python" -c "import json,sys; d=json.load(open(sys.argv[1])); s=d['schedule']; print(sys.argv[2], 'plan: ends at', d['expected_end_s'], 's of', d['budget_s'], '; runs', sum(not r['skipped'] for r in s), 'of', len(s), '; skips', [r['setting'] for r in s if r['skipped']])" "$out/gpu_plan_$dev.json" "$dev"
  done
  ;;
*)
  sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" >&2
  exit 2
  ;;
esac
