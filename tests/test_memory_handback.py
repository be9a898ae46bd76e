"""Training hands its memory back before evaluation starts (issue 31, item 6).

On a GPU, vLLM asks for ``eval.vllm_gpu_memory_utilization`` (0.9) of the card when it starts;
whatever training still holds (the model, its gradients, the optimizer's state, the Accelerator's
lists of them) makes that fail. Here, on a CPU, ``limo-exp run`` trains the tiny model for two
real steps and, at the moment evaluation is entered, nothing of training may be reachable:
weak references to the model, the wrapped model, a parameter, a gradient, the optimizer, the
scheduler and every optimizer-state tensor are all dead after one ``gc.collect()``.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import torch


def test_nothing_of_training_is_reachable_when_evaluation_starts(small_cfg, monkeypatch):
    from limo_exp import training
    from limo_exp.commands.run import run
    from limo_exp.evaluation import evaluate as evaluation
    from limo_exp.evaluation.evaluate import EvalResult

    refs: dict[str, weakref.ref] = {}
    real_train = training.train

    def spy_train(model, *args, **kwargs):
        first = next(p for p in model.parameters() if p.requires_grad)

        def grad_seen(p):  # a weak reference to a gradient as it is accumulated
            if p.grad is not None and "gradient" not in refs:
                refs["gradient"] = weakref.ref(p.grad)

        first.register_post_accumulate_grad_hook(grad_seen)
        result = real_train(model, *args, **kwargs)
        refs["model"], refs["wrapped model"] = weakref.ref(model), weakref.ref(result.model)
        refs["parameter"] = weakref.ref(first)
        refs["optimizer"] = weakref.ref(result.optimizer)
        refs["inner optimizer"] = weakref.ref(getattr(result.optimizer, "optimizer", result.optimizer))
        state = [t for s in result.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        assert len(state) >= 2, "two AdamW steps leave exp_avg and exp_avg_sq"
        refs.update({f"optimizer state {i}": weakref.ref(t) for i, t in enumerate(state)})
        scheduler = list(kwargs_accelerator(args, kwargs)._custom_objects)
        refs.update({f"scheduler {i}": weakref.ref(s) for i, s in enumerate(scheduler)})
        return result

    seen: dict = {}

    def evaluation_starts(model_path, suite, output_dir, **options):
        gc.collect()
        seen["alive"] = sorted(name for name, ref in refs.items() if ref() is not None)
        seen["checked"] = sorted(refs)
        seen["checkpoint"] = (Path(model_path) / "config.json").is_file()
        return EvalResult({"synthetic/accuracy": 0.25}, {}, {"backend": "hf"}, artifacts=[])

    monkeypatch.setattr(training, "train", spy_train)
    monkeypatch.setattr(evaluation, "evaluate_to_dir", evaluation_starts)
    out = run(small_cfg("tracking=disabled"))

    assert "gradient" in seen["checked"] and "optimizer state 1" in seen["checked"]
    assert "scheduler 0" in seen["checked"]
    assert seen["alive"] == [], f"still reachable when evaluation starts: {seen['alive']}"
    assert seen["checkpoint"]  # what evaluation needs is there: the saved checkpoint
    assert out["metrics"]["synthetic/accuracy"] == 0.25 and out["metrics"]["train/steps"] == 2


def kwargs_accelerator(args, kwargs):
    """The Accelerator ``training.train`` was given (its fifth positional argument)."""
    return kwargs.get("accelerator", args[3] if len(args) > 3 else None)
