"""Names a run is logged under: tags limo-exp sets and reads, and MLflow-safe metric names.

No MLflow import here, so any stage can name a metric without pulling in the client.
"""

from __future__ import annotations

import re

RUN_KEY_TAG = "limo.run_key"
KIND_TAG = "limo.kind"
# what a tracked run is: a configuration trained and evaluated (limo-exp run), a model evaluated
# without training (limo-exp eval: the N = 0 baseline), or the parent of a sweep's runs
KINDS = ("run", "eval", "sweep", "distill")  # distill: a teacher wrote a pool's solutions
LEGACY_KINDS = {"eval_only": "eval"}  # stores written before the kind tag was renamed

_BAD = re.compile(r"[^0-9A-Za-z_\-./ ]")


def metric_name(name: str) -> str:
    """MLflow rejects ``,`` ``:`` ``@`` (among others): ``exact_match,flexible`` -> ``exact_match/flexible``."""
    name = name.replace(",", "/").replace("@", "_at_").replace(":", "_")
    return _BAD.sub("_", name)


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^/@\s:]*)(?::[^/@\s]*)?@")
# a key whose last word names a secret: token, hf_token, password, client_secret, api_key, ...
SECRET_KEY = re.compile(r"(^|[_\-])(token|password|passwd|secret|api_?key|credentials?)$", re.IGNORECASE)


def mask(value: str, key: str = "") -> str:
    """What may be logged of a value: nothing under a key named like a secret, and no
    user info in a URI (``http://user:pw@host`` -> ``http://***@host``)."""
    if key and SECRET_KEY.search(key.rsplit(".", 1)[-1]):
        return "***" if value else value
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", value)


def mask_tree(d, key: str = ""):
    """``mask`` over a nested config (dicts and lists), e.g. before it is written as an artifact."""
    if isinstance(d, dict):
        return {k: mask_tree(v, str(k)) for k, v in d.items()}
    if isinstance(d, list):
        return [mask_tree(v, key) for v in d]
    return mask(d, key) if isinstance(d, str) else d
