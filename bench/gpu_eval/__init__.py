"""The GPU eval bench (bench/bench_gpu_eval.py) in parts: ``model`` (the random model at the real
vocabulary and its tokenizer), ``forced_end`` (its end-of-turn rule, loaded with the weights) and
``workloads`` (the runs and step times, through the engines' public API)."""
