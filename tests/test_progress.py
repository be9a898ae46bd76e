"""Progress bars: on a terminal only (never in CI, logs or tests unless forced with LIMO_PROGRESS=1)."""

from __future__ import annotations

import logging

import pytest

from limo_exp.data import progress


@pytest.fixture
def limo_log():
    logger = logging.getLogger("limo_exp")
    logger.setLevel(logging.INFO)  # as under a Hydra command
    yield logger
    logger.setLevel(logging.NOTSET)


def test_bars_only_where_someone_watches(monkeypatch, limo_log):
    monkeypatch.delenv("LIMO_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert not progress.enabled()  # pytest's stderr is not a terminal
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.enabled()
    monkeypatch.setenv("CI", "true")
    assert not progress.enabled()
    monkeypatch.setenv("LIMO_PROGRESS", "1")
    assert progress.enabled()
    monkeypatch.setenv("LIMO_PROGRESS", "0")
    monkeypatch.delenv("CI")
    assert not progress.enabled()
    monkeypatch.delenv("LIMO_PROGRESS")
    limo_log.setLevel(logging.WARNING)  # hydra.job_logging.root.level=WARNING
    assert not progress.enabled()


def test_stage_marks_show_records_per_second(monkeypatch, capsys):
    monkeypatch.setenv("LIMO_PROGRESS", "1")
    marks = progress.StageMarks()
    marks.last -= 2.0  # the stage took two seconds
    marks.done("dedup_near", 1000)
    err = capsys.readouterr().err
    assert "dedup_near" in err and "1000/1000" in err and "rec/s" in err
    monkeypatch.setenv("LIMO_PROGRESS", "0")
    progress.StageMarks().done("decontam", 10)
    with progress.bar("train", total=3, unit="step") as b:
        b.update(3)
    assert capsys.readouterr().err == ""
