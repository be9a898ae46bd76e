"""The GPU training bench (bench/bench_gpu_train.py) in parts: ``settings`` (what runs, in what
order, what each is expected to cost per device), ``limo_side`` / ``trl_side`` (each side's
runner), ``measure`` (one setting: model, clock, host syncs, figures), ``checks`` (Liger against
the plain paths) and ``report`` (summary and targets)."""
