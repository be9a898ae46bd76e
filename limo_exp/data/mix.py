"""``pool=mix``: one pool out of several sources, each record marked with its member.

    members:                        # pool.members: label -> a member
      math: {pool: math_train, weight: 1}
      gsm8k: {pool: gsm8k, weight: 1, n: 2000}
      aime: {pool: aime_historical, count: 0}

A member is a pool source (``pool``) with any key of the ``pool`` group but ``data_dir`` (the mix's
``pool.data_dir`` is every member's) and one of ``weight`` (its share of the N selected) or
``count`` (exactly that many of the N; the counts add up to N). A member at weight or count 0 is
not read. The members are read in their order and concatenated, ``meta["member"]`` naming each
record's; curation then deduplicates and decontaminates the whole mixture (a problem in two
members is kept once, in the first), and ``selection.mixture`` draws N by the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from limo_exp.data.records import Record
from limo_exp.typed import ConfigError

MEMBER = "member"  # meta key: the label of the member a record came from
SHARE_KEYS = ("weight", "count")
MEMBER_KEYS = ("pool", "hub_id", "hub_config", "split", "file", "fields", "n", "seed", "revision")


def check_members(members: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The members with a weight or count above 0, checked; ConfigError names the key at fault."""
    if not members:
        raise ConfigError("pool=mix needs pool.members: label -> {pool: <source>, weight: w} (or count: n)")
    kinds = set()
    out = {}
    for label, m in members.items():
        at = f"pool.members.{label}"
        if not isinstance(m, Mapping):
            raise ConfigError(f"{at}: expected a mapping {{pool, weight or count, ...}}, got {m!r:.60}")
        unknown = sorted(set(m) - set(MEMBER_KEYS) - set(SHARE_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown config key {at}.{unknown[0]}; valid keys: {[*MEMBER_KEYS, *SHARE_KEYS]}"
            )
        if not isinstance(m.get("pool"), str) or m["pool"] == "mix":
            raise ConfigError(f"{at}.pool must name a pool source (not mix), got {m.get('pool')!r}")
        given = [k for k in SHARE_KEYS if m.get(k) is not None]
        if len(given) != 1:
            raise ConfigError(f"{at}: set one of weight or count, got {given or 'neither'}")
        value = m[given[0]]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{at}.{given[0]}={value!r}: expected a number >= 0")
        if given[0] == "count" and not isinstance(value, int):
            raise ConfigError(f"{at}.count={value!r}: expected a whole number")
        kinds.add(given[0])
        if value > 0:
            out[label] = dict(m)
    if len(kinds) > 1:
        raise ConfigError("pool.members: give every member a weight, or every member a count, not both")
    if not out:
        raise ConfigError("pool.members: every member has weight or count 0: nothing to draw from")
    return out


def load_mix(
    members: Mapping[str, Any] | None, data_dir: str | None, load: Callable[..., list[Record]]
) -> list[Record]:
    """Every member with a share, read by ``load`` (``pools.load_pool``), in order, marked."""
    out: list[Record] = []
    for label, m in check_members(members).items():
        kw = {k: v for k, v in m.items() if k in MEMBER_KEYS and k != "pool" and v is not None}
        records = load(m["pool"], data_dir=data_dir, **kw)
        out += [replace(r, meta=r.meta | {MEMBER: label}) for r in records]
    return out


def origin(pool: Any, member_origin: Callable[[Any], dict]) -> dict[str, Any]:
    """Where each member's records came from (``pools.pool_origin`` of each), for the run's dataset."""
    out = {}
    for label, m in check_members(pool.members).items():
        kw = {k: v for k, v in m.items() if k in MEMBER_KEYS and k not in ("pool", "fields")}
        out[label] = member_origin(replace(pool, name=m["pool"], members=None, **kw))
    return {"kind": "mix", "members": out}
