"""Shared fixtures: paths to ../shared/data, a tiny random model, a throwaway config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LIMO_SHARED_DATA", REPO.parent / "shared" / "data"))
EVAL_DIR = SHARED_DATA / "eval"
POOL_DIR = SHARED_DATA / "pools"
CONF_DIR = REPO / "conf"
GPQA_FILE = Path(__file__).parent / "data" / "gpqa_diamond.jsonl"  # synthetic, in GPQA's schema
# prompts of different lengths for comparing generation engines (test_decoding, test_vllm)
PROMPTS = [
    "What is 2+2?",
    "Solve x^2 = 9 for positive x, and show all of the steps",
    "hi",
    "The sum of the first ten odd numbers is",
    "a b c d e f g h i j k",
    "Find the remainder when 7^100 is divided by 5.",
    "ok",
    "Compute 12*13.",
]
needs_eval_data = pytest.mark.skipif(not EVAL_DIR.is_dir(), reason=f"benchmark files not found at {EVAL_DIR}")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} is absent: clone the project beside ../shared")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the session, so the tiny model is built once."""
    return tmp_path_factory.mktemp("limo_cache")


@pytest.fixture(scope="session")
def tiny_model(cache_dir) -> Path:
    from limo_exp.training.models import build_tiny_random

    return build_tiny_random(cache_dir / "models" / "tiny_random-h64-l2-s0")


@pytest.fixture(scope="session")
def eval_data_dir(tmp_path_factory) -> Path:
    """The shared benchmark files plus the synthetic GPQA file, linked into one folder."""
    d = tmp_path_factory.mktemp("eval_data")
    for f in EVAL_DIR.glob("*.jsonl"):
        (d / f.name).symlink_to(f)
    (d / GPQA_FILE.name).symlink_to(GPQA_FILE)
    return d


def torchrun(nproc: int, port: int) -> list[str]:
    """The command prefix that starts ``nproc`` CPU processes (gloo) on this machine."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_port",
        str(port),
    ]


def compose(overrides: list[str] | None = None, config_name: str = "config"):
    """Compose the real config tree (as `limo-exp run` would), with the hydra node."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hcompose(config_name=config_name, overrides=overrides or [], return_hydra_config=False)


@pytest.fixture
def small_cfg(tmp_path, cache_dir):
    """A 2-step tiny_random run into a throwaway MLflow store under tmp_path."""

    def make(*extra: str):
        return compose(
            [
                "debug=fast",
                f"paths.output_root={tmp_path}",
                f"paths.cache_dir={cache_dir}",
                f"paths.results_dir={tmp_path / 'results'}",
                "study=test",
                *extra,
            ]
        )

    return make


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared CPU: one intra-op thread (OpenMP threads wait on each other
    longer than these matrices take), restored after the module (``usefixtures("one_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
