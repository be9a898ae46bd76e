"""A point's selection from its config: the length band, N questions of the tier in the
strategy's order (k solutions each; a mixture's members by weight), the truncation; and the
figures a run logs about what it trains on (``train/questions``, ``train/solution_words``,
``train/words_cut``, ``train/share/<member>``).

    check(pool, config)                       # before curation: counts and fields
    examples, figures = choose(curated.records, config, funnel)
"""

from __future__ import annotations

from typing import Any

from limo_exp.config import Config
from limo_exp.data.records import Record
from limo_exp.selection import traces
from limo_exp.selection.select import check_pool, select


def _shares(c: Config) -> dict[str, float] | None:
    if c.pool.name != "mix":
        return None
    from limo_exp.selection import mixture

    return mixture.shares(c.pool.members or {}, c.data.n_samples)


def check(pool: list[Record], c: Config) -> None:
    """Before curation (which only removes records): ``check_pool`` on the records in the length
    band, each needing k solutions of the tier; a mixture's weights or counts."""
    _shares(c)
    q = c.quality
    records = traces.length_band(pool, q.min_words, q.max_words)
    d = c.data
    check_pool(records, d.n_samples, q.tier, c.selection, d.answers_per_question, d.min_answers)


def choose(records: list[Record], c: Config, funnel: list[dict[str, Any]] | None = None):
    """The examples trained on and the figures logged about them."""
    q, d = c.quality, c.data
    band = traces.length_band(records, q.min_words, q.max_words)
    if len(band) < len(records) and funnel is not None:
        funnel = [*funnel, {"stage": "length_band", "in": len(records), "out": len(band)}]
    shares = _shares(c)
    examples = select(
        band,
        d.n_samples,
        q.tier,
        c.seed,
        d.stratify_by,
        funnel,
        c.selection,
        d.answers_per_question,
        shares,
        d.min_answers,
    )
    examples, figures = traces.truncate_examples(examples, q.truncate)
    figures["train/questions"] = float(len({e.id for e in examples}))  # train/n_examples: N x k
    if shares:
        from limo_exp.selection import mixture

        figures |= mixture.share_figures(examples, band, list(shares))
    return examples, figures
