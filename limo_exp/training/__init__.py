"""Training: supervised fine-tuning with Accelerate.

sft_data.py (chat-template tokenisation, loss on assistant tokens, collate and pack), loop.py
(train, save), recipe.py (what the recipe does before the first step; the Accelerator),
steps.py (the host-side step plan), attention.py (packed rows by their boundaries), models.py (where base weights come from, loading), lora.py (adapters, merged on
save). A killed run's resumable state (checkpoints) belongs here too.
"""

from limo_exp.training import lora
from limo_exp.training.batching import prepare
from limo_exp.training.loop import TrainResult, accumulation_steps, check_loss_impl, save, train
from limo_exp.training.models import load, load_for_training, load_tokenizer, resolve
from limo_exp.training.recipe import make_accelerator, sequences_per_step

__all__ = [
    "TrainResult",
    "accumulation_steps",
    "check_loss_impl",
    "load",
    "load_for_training",
    "load_tokenizer",
    "lora",
    "make_accelerator",
    "prepare",
    "resolve",
    "save",
    "sequences_per_step",
    "train",
]
