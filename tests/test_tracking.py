from __future__ import annotations

import pytest

from limo_exp.config import flatten
from limo_exp.tracking.names import metric_name
from limo_exp.tracking.tracker import NullTracker, Tracker


def test_metric_names_mlflow_accepts():
    assert metric_name("eval/limo_math500/exact_match,flexible") == "eval/limo_math500/exact_match/flexible"
    assert metric_name("eval/limo_aime24/maj@64") == "eval/limo_aime24/maj_at_64"
    assert metric_name("a:b") == "a_b"


def test_flatten():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}


def test_crash_marks_run_failed(tmp_path):
    t = Tracker(f"sqlite:///{tmp_path}/m.db", "x", str(tmp_path / "art"))
    with pytest.raises(RuntimeError), t.run("boom"):
        raise RuntimeError("crash")
    assert t.client.get_run(t.run_id).info.status == "FAILED"
    with t.run("ok", {"limo.run_key": "k1"}):
        t.log_metrics({"eval/x/exact_match,none": 0.5}, step=1)
    assert t.client.get_run(t.run_id).data.metrics == {"eval/x/exact_match/none": 0.5}
    assert t.find_finished("k1").run_id == t.run_id
    assert t.find_finished("k2") is None


def test_null_tracker_is_a_noop():
    t = NullTracker()
    with t.run("x") as r:
        r.log_metrics({"a": 1.0})
    assert t.find_finished("k") is None
