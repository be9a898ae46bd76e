"""Rule-based reasoning-chain quality, in the spirit of LIMO's hand-rated levels (L1 worst .. L5 best).

LIMO rated chains on elaborated reasoning, self-verification, exploratory approaches and adaptive
step granularity. Here each is a signal in [0, 1]:

- elaboration: log-scaled length, saturating at ``FULL_WORDS`` words;
- verification: "verify", "check", "wait", "confirm", "double-check", "sanity", "indeed" per 100 words;
- exploration: "alternatively", "perhaps", "maybe", "might", "suppose", "what if", "instead",
  "another approach" per 100 words;
- granularity: steps (non-empty lines and sentences) per 100 words.

Rates are per 100 words, so long chains are not rewarded twice for length; each rate saturates
(1 - exp(-rate / scale)). Rates are damped for chains under ``MIN_WORDS`` words, so a one-line
"check: 5" does not outscore a worked solution. The score is the weighted sum (``WEIGHTS``, sum 1).
Tiers are quantiles of the pool's scores: L1 the lowest fifth ... L5 the highest.
"""

from __future__ import annotations

import math
import re

import numpy as np

WEIGHTS = {"elaboration": 0.4, "verification": 0.25, "exploration": 0.15, "granularity": 0.2}
FULL_WORDS = 4000  # a LIMO-length chain gets the whole elaboration signal
MIN_WORDS = 40
SCALES = {"verification": 0.6, "exploration": 0.4, "granularity": 8.0}  # rate per 100 words at ~63%

# one pass: group 1 = a self-verification word, group 2 = an exploration word
_CUES = re.compile(
    r"\b(?:(verif\w*|check\w*|wait|confirm\w*|double-check\w*|sanity|indeed|re-?examin\w*)"
    r"|(alternativ\w*|perhaps|maybe|might|suppose|what if|instead|another (?:way|approach)))\b"
)


def chain_signals(text: str) -> dict[str, float]:
    words = len(text.split())
    if words == 0:
        return dict.fromkeys(WEIGHTS, 0.0)
    cues = _CUES.findall(text.lower())
    n_verify = sum(1 for v, _ in cues if v)
    per100 = 100.0 / words
    damp = min(1.0, words / MIN_WORDS)
    steps = (
        1 + text.count("\n") + text.count(". ") + text.count("? ") + text.count("! ")
    )  # lines and sentences

    def sat(count: float, key: str) -> float:
        return damp * (1.0 - math.exp(-count * per100 / SCALES[key]))

    return {
        "elaboration": min(1.0, math.log1p(words) / math.log1p(FULL_WORDS)),
        "verification": sat(n_verify, "verification"),
        "exploration": sat(len(cues) - n_verify, "exploration"),
        "granularity": sat(steps, "granularity"),
    }


def chain_score(text: str) -> float:
    """Quality score in [0, 1] of one reasoning chain (higher is better)."""
    sig = chain_signals(text)
    return round(sum(WEIGHTS[k] * sig[k] for k in WEIGHTS), 6)


def quantile_tiers(scores: list[float], levels: int = 5) -> list[str]:
    """ "L1".."L<levels>" by quantile of ``scores``; equal scores always share a tier."""
    if not scores:
        return []
    arr = np.asarray(scores, dtype=np.float64)
    edges = np.quantile(arr, np.arange(1, levels) / levels)
    idx = np.searchsorted(edges, arr, side="left")  # a score above k edges goes to tier k+1; ties stay low
    return [f"L{int(i) + 1}" for i in idx]
