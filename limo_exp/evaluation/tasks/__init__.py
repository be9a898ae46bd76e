"""lm-eval tasks of limo-exp: ``limo_*`` YAMLs + pure functions in utils.py.

Point lm-eval at this folder (``limo_exp.evaluation.registry.TASKS_DIR``):
``TaskManager(include_path=TASKS_DIR, metadata={...})``; the metadata (data_dir, gpqa_seed,
instruction, ...) reaches the dataset functions.
"""
