"""Training: supervised fine-tuning with Accelerate.

sft_data.py (chat-template tokenisation, loss on assistant tokens, collate and pack), loop.py
(train, save), models.py (where base weights come from, loading), lora.py (adapters, merged on
save). A killed run's resumable state (checkpoints) belongs here too.
"""

from limo_exp.training import lora
from limo_exp.training.batching import prepare
from limo_exp.training.loop import TrainResult, accumulation_steps, check_loss_impl, save, train
from limo_exp.training.models import load, load_for_training, load_tokenizer, resolve

__all__ = [
    "TrainResult",
    "accumulation_steps",
    "check_loss_impl",
    "load",
    "load_for_training",
    "load_tokenizer",
    "lora",
    "prepare",
    "resolve",
    "save",
    "train",
]
