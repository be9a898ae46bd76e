"""Commands: thin Hydra apps, the only modules that see a DictConfig (``limo-exp <command>``).

run.py (pool -> curate -> select -> train -> evaluate -> log), curate.py, eval.py (an untrained
baseline), report.py, sweep.py (the multirun's parent run), common.py (what they share).
Each parses the composed config once into ``limo_exp.config.RunSpec`` and calls the stages.
"""
