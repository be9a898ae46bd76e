"""Names a run is logged under: tags limo-exp sets and reads, and MLflow-safe metric names.

No MLflow import here, so any stage can name a metric without pulling in the client.
"""

from __future__ import annotations

import re

RUN_KEY_TAG = "limo.run_key"
KIND_TAG = "limo.kind"
# what a tracked run is: a configuration trained and evaluated (limo-exp run), a model evaluated
# without training (limo-exp eval: the N = 0 baseline), or the parent of a sweep's runs
KINDS = ("run", "eval", "sweep")
LEGACY_KINDS = {"eval_only": "eval"}  # stores written before the kind tag was renamed

_BAD = re.compile(r"[^0-9A-Za-z_\-./ ]")


def metric_name(name: str) -> str:
    """MLflow rejects ``,`` ``:`` ``@`` (among others): ``exact_match,flexible`` -> ``exact_match/flexible``."""
    name = name.replace(",", "/").replace("@", "_at_").replace(":", "_")
    return _BAD.sub("_", name)
