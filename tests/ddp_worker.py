"""Run by tests/test_train.py under torchrun (2 CPU processes, gloo): write the losses."""

import json
import sys

import torch
from accelerate import Accelerator

from limo_exp.config import TrainConfig
from limo_exp.data.records import Example
from limo_exp.data.synthetic import make_pool
from limo_exp.training.loop import train
from limo_exp.training.models import load

model_dir, out = sys.argv[1], sys.argv[2]
train_kw = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {"batch_size": 2}
acc = Accelerator(cpu=True)
torch.manual_seed(0)
model, tok = load(model_dir)
examples = [Example(r.id, r.problem, r.solutions[1].text, r.answer, "short") for r in make_pool(8, seed=0)]
res = train(model, tok, examples, TrainConfig(lr=1e-3, max_steps=2, instruction="Reason.", **train_kw), acc)
if acc.is_main_process:
    with open(out, "w") as f:
        json.dump({"losses": res.losses, "world": acc.num_processes, "steps": res.steps}, f)
