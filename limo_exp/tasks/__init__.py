"""lm-eval tasks of limo-exp (``limo_*`` YAMLs + pure functions in utils.py).

Point lm-eval at this folder: ``TaskManager(include_path=TASKS_DIR, metadata={...})``;
the metadata (data_dir, gpqa_seed, instruction, ...) reaches the dataset functions.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).parent
PAPER_TASKS = (
    "limo_aime24",
    "limo_aime25",
    "limo_amc23",
    "limo_math500",
    "limo_olympiadbench",
    "limo_gpqa_diamond",
)
TASKS = PAPER_TASKS + ("limo_synthetic",)
GROUPS = ("limo_paper",)
