"""The report and `limo-exp compare` on a throwaway MLflow store with seeds, tiers and a baseline
(tests/study_store.py): intervals, fits, paired tests in words, LaTeX, cost, the notebook."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from study_store import PROTOCOL, TASKS, log_run, make_study

from limo_exp.analysis.compare import CompareError, compare, format_comparison
from limo_exp.analysis.report import report
from limo_exp.analysis.study import load_study
from limo_exp.config import ReportConfig, TrackingConfig
from limo_exp.tracking.tracker import Tracker

OPTS = ReportConfig(n_boot=500, fit_boot=50)
P = {"seed": "0", "data.n_samples": "8"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    return make_study(root) | {"root": root}


@pytest.fixture(scope="module")
def reported(store):
    tracking = TrackingConfig(enabled=True, uri=store["uri"], experiment=store["experiment"])
    opts = ReportConfig(n_boot=500, fit_boot=50, reported=["limo_32b", "evalchemy_s1_32b"])
    return report(tracking, opts, store["root"] / "results", store["root"] / "cache")


@pytest.fixture(scope="module")
def study(store, reported):  # after the report: the samples are cached
    tracking = TrackingConfig(enabled=True, uri=store["uri"], experiment=store["experiment"])
    return load_study(tracking, store["root"] / "cache" / "samples")


def test_report_files_and_figures(reported):
    out = Path(reported["report"]).parent
    for name in ("report.md", "table.md", "table.tex", "cost.md", "runs.csv"):
        assert (out / name).stat().st_size > 100, name
    for stem in ("curve", "bars"):  # two tiers share N: grouped bars too
        assert (out / f"{stem}.png").stat().st_size > 10_000 and (out / f"{stem}.pdf").stat().st_size > 5_000


def test_table_rows_intervals_and_significant_bold(reported, store):
    rows = {(r.label, r.n): r for r in reported["rows"]}
    assert len(rows) == 1 + 2 * 4 + 2  # baseline, 2 tiers x 4 N, 2 reported
    long64 = rows[("long", 64)]
    assert long64.run_ids == (store["ids"][("long", 64, 0)], store["ids"][("long", 64, 1)])
    iv = long64.cells["limo_aime24"]
    assert iv.low < iv.mean < iv.high and iv.mean == pytest.approx(41 / 60)  # 2 seeds x 30 problems
    # long at 64 beats the runner-up (long at 32) significantly on both benchmarks: bold there only
    assert long64.bold == {"limo_aime24", "limo_math500"}
    assert all(not r.bold for key, r in rows.items() if key != ("long", 64))
    md = reported["table"].read_text()
    assert "**68.3 ± " in md and "| LIMO-32B (reported) | - | 57.1 | 94.8 |" in md
    assert "percentile bootstrap over problems" in md  # the method is named in the caption


def test_latex_table_shape(reported):
    tex = reported["latex"].read_text()
    assert tex.count("{") == tex.count("}")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    body = tex[tex.index("\\midrule") : tex.index("\\bottomrule")]
    lines = [ln for ln in body.splitlines() if ln.endswith("\\\\")]
    # 11 rows: N, 2 tasks, average, answered
    assert len(lines) == 11 and all(ln.count("&") == 5 for ln in lines)
    assert "\\textbf{68.3 $\\pm$" in tex and "$^\\dagger$Published numbers, not measured" in tex
    head = "Model / configuration & $N$ & aime24 ($n=30$) & math500 ($n=60$) & Avg. & answered, \\% \\\\"
    assert head in tex and "\\multicolumn{3}{c}{accuracy, \\%}" in tex
    assert "\\caption{Accuracy (\\%) of base, untrained ($N = 0$) and fine-tuned on $N$ examples" in tex
    assert "paired test at $p < 0.05$." in tex and "p < 0.05" not in tex.replace("$p < 0.05$", "")


def test_report_states_significance_in_words_with_run_ids(reported, store):
    text = reported["report"].read_text()
    short_vs_base = next(w for w in reported["findings"] if "short at N=64 vs base" in w and "aime24" in w)
    assert "exact McNemar p = 0.125: **not significant**" in short_vs_base
    long_vs_short = next(w for w in reported["findings"] if "long at N=64 vs short at N=64" in w)
    assert "**significant**" in long_vs_short and store["ids"][("short", 64, 1)] in long_vs_short
    assert "![curve](curve.png)" in text and "![bars](bars.png)" in text
    assert "| short | math500 | power: acc = " in text  # the fitted line and its plateau N
    assert re.search(r"\| short \| math500 \| power: .* \| \d+ \[\d+, \d+\] \|", text)


def test_report_names_what_every_run_shares_and_a_missing_random_control(reported):
    import pandas as pd

    from limo_exp.analysis.study import held_fixed, missing_control

    assert "Every fine-tuned run: `model.name=base`, `pool.name=pool`\n" in reported["report"].read_text()
    assert "Warning" not in reported["report"].read_text()  # no strategy param: nothing to warn about
    df = pd.DataFrame(
        {"kind": ["eval", "run", "run"], "selection.strategy": [None, "longest", "diverse"], "pool.name": "p"}
    )
    assert held_fixed(df) == {"pool.name": "p"}  # the strategy differs: a column, not held fixed
    assert missing_control(df).startswith("no run uses selection.strategy=random: diverse, longest cannot")
    df.loc[2, "selection.strategy"] = "random"
    assert missing_control(df) is None and held_fixed(df) == {"pool.name": "p"}


def test_cost_and_selection_information(reported):
    cost = (Path(reported["report"]).parent / "cost.md").read_text()
    # log2 C(400, 8) = 53.8 bits; 8 examples x 300 tokens; the baseline costs its evaluation only
    assert re.search(r"\| long \| 8 \| .* \| 2\.4e\+03 \| .* \| 53\.8 \|", cost)
    assert "| base (untrained) | 0 |" in cost and "device-s per correct" in cost
    assert "| teacher tokens | teacher s |" in cost
    assert re.search(r"\| long \| 8 \| .* \| 5\.00e\+05 \| 900 \|", cost)  # the teacher's cost
    assert re.search(r"\| short \| 8 \| .* \| - \| - \|", cost)


def test_missing_published_entry_and_one_point_curves(store, tmp_path):
    tracking = TrackingConfig(enabled=True, uri=store["uri"], experiment=store["experiment"])
    with pytest.raises(SystemExit, match="no entry 'limo_7b'.*entries: .*limo_32b"):
        report(tracking, ReportConfig(reported=["limo_7b"]), tmp_path, store["root"] / "cache")
    small = make_study(tmp_path / "one", ns=(16,), seeds=(0,))
    out = report(
        TrackingConfig(enabled=True, uri=small["uri"], experiment="fake"),
        OPTS,
        tmp_path / "r",
        tmp_path / "c",
    )
    assert "1 value(s) of N: no fit (needs 3)" in out["report"].read_text()


def test_compare_selectors_and_the_paired_result(study, store):
    ids = store["ids"]
    res = compare(study, "quality.name=long;data.n_samples=64", ids[("base", 0, 0)], OPTS)
    assert res["a"]["run_ids"] == [ids[("long", 64, 0)], ids[("long", 64, 1)]]
    aime = res["tasks"]["limo_aime24"]
    assert aime["n"] == 30 and aime["p_value"] < 0.001 and aime["ci_low"] > 0
    by_key = compare(
        study,
        study.frame.set_index("run_id").loc[ids[("short", 8, 0)], "run_key"],
        ids[("short", 8, 1)],
        OPTS,
    )
    assert by_key["a"]["run_ids"] == [ids[("short", 8, 0)]]
    text = format_comparison(res, 0.95, 0.05)
    assert "| limo_aime24 | 30 |" in text and "exact" not in text.split("limo_aime24")[1].split("\n")[0]
    suite, math500 = res["suite"], res["tasks"]["limo_math500"]  # the two benchmarks' unweighted mean
    assert suite["tasks"] == ["limo_aime24", "limo_math500"] and suite["n"] == 30 + math500["n"]
    assert suite["diff"] == pytest.approx((aime["diff"] + math500["diff"]) / 2)
    assert suite["acc_a"] == pytest.approx((aime["acc_a"] + math500["acc_a"]) / 2)
    assert f"| mean of 2 | {suite['n']} | {suite['acc_a']:.3f} |" in text and "Satterthwaite" in text
    with pytest.raises(CompareError, match="differ in more than the seed: \\['quality.name'\\]"):
        compare(study, "data.n_samples=64", ids[("base", 0, 0)], OPTS)
    with pytest.raises(CompareError, match="no param 'quality.nam'"):
        compare(study, "quality.nam=long", ids[("base", 0, 0)], OPTS)
    with pytest.raises(CompareError, match="matches no FINISHED run"):
        compare(study, "quality.name=longest", ids[("base", 0, 0)], OPTS)


def test_compare_refuses_other_protocols_and_disjoint_problems_and_names_missing_items(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    t = Tracker(uri, "x", str(tmp_path / "art"))
    base = {"limo.kind": "run"}
    a = log_run(t, tmp_path, "a", base | {"limo.run_key": "a" * 20}, P, {"limo_aime24": [1, 0, 1]})
    greedy_b = {"limo.run_key": "b" * 20, "eval.temperature": "0.6", "eval.num_samples": "8"}
    b = log_run(t, tmp_path, "b", base | greedy_b, P, {"limo_aime24": [1, 0, 1]})
    c = log_run(t, tmp_path, "c", base | {"limo.run_key": "c" * 20}, P, {"limo_math500": [1, 1]})
    other_items = {"limo_aime24": {"limo_aime24-0": 0, "limo_aime24-1": 0, "hub-7": 1}}
    d = log_run(t, tmp_path, "d", base | {"limo.run_key": "d" * 20}, P, other_items)
    disjoint = {"limo_aime24": {"x-1": 1, "x-2": 0}}
    e = log_run(t, tmp_path, "e", base | {"limo.run_key": "e" * 20}, P, disjoint)
    st = load_study(TrackingConfig(enabled=True, uri=uri, experiment="x"), tmp_path / "cache")
    with pytest.raises(
        CompareError, match=r"different protocols \(temperature: A=\['0.0'\] B=\['0.6'\]; num_samples"
    ):
        compare(st, a, b, OPTS)
    with pytest.raises(
        CompareError, match=r"no benchmark in common: A evaluated \['limo_aime24'\], B \['limo_math500'\]"
    ):
        compare(st, a, c, OPTS)
    with pytest.raises(
        CompareError, match="share no problem: limo_aime24: no problem both evaluated \\(3 in A, 2 in B\\)"
    ):
        compare(st, a, e, OPTS)
    whole = compare(st, a, d, OPTS)
    assert "suite" not in whole  # one benchmark shared: no mean of benchmarks
    res = whole["tasks"]["limo_aime24"]  # a hub copy with one item the local lacks
    assert res["n"] == 2 and res["only_a"] == ["limo_aime24-2"] and res["only_b"] == ["hub-7"]
    assert "1 item(s) only in B: hub-7" in format_comparison(compare(st, a, d, OPTS), 0.95, 0.05)
    assert TASKS and PROTOCOL  # the shared fixture's protocol is what a and d were logged with


def test_compare_command_end_to_end(store, tmp_path):
    """The CLI: two selectors that look like overrides, then overrides; a bad pair exits with one line."""
    common = [
        f"tracking.uri={store['uri']}",
        f"tracking.experiment={store['experiment']}",
        f"paths.results_dir={tmp_path}",
        f"paths.cache_dir={store['root'] / 'cache'}",
    ]
    cmd = [sys.executable, "-m", "limo_exp", "compare", "quality.name=long;data.n_samples=64"]
    ok = subprocess.run(
        cmd + ["quality.name=short;data.n_samples=64", *common], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "| limo_aime24 | 30 | 0.683 | 0.200 |" in ok.stdout
    saved = json.loads(next((tmp_path / "fake" / "compare").glob("*.json")).read_text())
    assert saved["tasks"]["limo_math500"]["n"] == 60
    bad = subprocess.run(
        cmd + ["quality.name=long;data.n_samples=64", *common], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "compare: " in bad.stderr and "name the same runs" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_report_command_names_rows_by_their_labels(store, tmp_path):
    """`limo-exp report`: report.labels over conf/'s labels over the ids (the store logged none)."""
    from conftest import compose

    from limo_exp.commands.report import run_report

    cfg = compose(
        [
            f"tracking.uri={store['uri']}",
            f"study={store['experiment']}",
            f"paths.results_dir={tmp_path}",
            f"paths.cache_dir={store['root'] / 'cache'}",
            "report.n_boot=200",
            "report.fit_boot=0",
            "report.labels={long: Long chains}",
        ]
    )
    out = run_report(cfg)
    labels = {r.label for r in out["rows"]}
    assert {"Long chains", "short CoT", "base (untrained)"} <= labels and "long" not in labels
    md = (tmp_path / "fake" / "table.md").read_text()
    assert "| Long chains | 64 | **68.3 ± " in md and "| short CoT | 8 | " in md
    assert "Long chains at N=64 vs base" in (tmp_path / "fake" / "report.md").read_text()


NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "less_is_more.ipynb"


def test_notebook_builds_the_report_from_mlflow(store, tmp_path):
    """The committed notebook has no outputs, a papermill parameters cell first and a sentence
    before every code cell, and its code runs against a throwaway store."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert code[0]["metadata"].get("tags") == ["parameters"]
    assert all(
        cells[i - 1]["cell_type"] == "markdown" for i, c in enumerate(cells) if c["cell_type"] == "code"
    )
    ns: dict = {}
    exec("".join(code[0]["source"]), ns)  # the parameters cell, then point it at the test store
    ns |= {
        "URI": store["uri"],
        "STUDY": store["experiment"],
        "CACHE_DIR": tmp_path / "c",
        "RESULTS_DIR": tmp_path,
    }
    for cell in code[1:]:
        exec("".join(cell["source"]), ns)
    assert (tmp_path / "fake" / "curve_notebook.png").exists()
    # the tiers by their labels in conf/quality/ (the store logged none)
    assert any(
        "long CoT at N=64 vs short CoT at N=64" in f
        for f in ns["findings"](ns["study"], ns["rows"], ns["opts"])
    )


def test_notebook_reads_the_configured_store_and_writes_to_the_results_dir(tmp_path):
    """Run as Jupyter runs it (in notebooks/), the notebook reads the store of LIMO_TRACKING_URI
    and writes its figure under LIMO_RESULTS_DIR/<study>/, nothing into the repository."""
    repo = NOTEBOOK.parents[1]
    st = make_study(tmp_path / "store", experiment="demo", tiers=("short",), ns=(8, 16), seeds=(0,))
    before = sorted(p for p in repo.joinpath("results").rglob("*") if p.is_file())
    env = os.environ | {
        "LIMO_TRACKING_URI": st["uri"],
        "LIMO_RESULTS_DIR": str(tmp_path / "results"),
        "LIMO_CACHE_DIR": str(tmp_path / "cache"),
        "MPLBACKEND": "Agg",
    }
    run_cells = (
        "import json, sys\n"
        "for c in json.load(open(sys.argv[1]))['cells']:\n"
        "    if c['cell_type'] == 'code':\n"
        "        exec(''.join(c['source']))\n"
        "print('URI', URI)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", run_cells, str(NOTEBOOK)],
        cwd=NOTEBOOK.parent,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"URI {st['uri']}" in out.stdout
    assert "| short CoT | 16 | " in out.stdout and "| base (untrained) | 0 | " in out.stdout
    assert (tmp_path / "results" / "demo" / "curve_notebook.png").stat().st_size > 10_000
    assert sorted(p for p in repo.joinpath("results").rglob("*") if p.is_file()) == before
    assert any((tmp_path / "cache" / "samples").iterdir())  # samples cached under LIMO_CACHE_DIR


def test_a_two_axis_sweep_draws_one_curve_per_value_of_the_second_axis(tmp_path, monkeypatch):
    """answers per question x N (sweeps/answers_per_question.yaml): a curve over N per k, each
    with its interval band and fit, named by the axis; what each row trained on in a table. The
    study is built in memory (no MLflow store: the store's side is test_report_files_and_figures)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    from study_store import outcomes

    from limo_exp.analysis import curves
    from limo_exp.analysis.report import trained_on
    from limo_exp.analysis.study import Study
    from limo_exp.analysis.tables import measured_rows
    from limo_exp.tracking.runs import SampleScores

    rows, scores = [], {}
    for k, like in ((1, "short"), (4, "long")):  # k = 4 solves what the long tier does
        for n in (8, 16, 32):
            run = f"k{k}-n{n}"
            rows.append(
                {"run_id": run, "kind": "run", "seed": "0", "data.n_samples": n, "model.name": "m",
                 "quality.name": "teacher", "data.answers_per_question": str(k), "train/questions": float(n),
                 "train/n_examples": float(n * k), "cost/train_tokens": 100.0 * n * k,
                 "train/solution_words": 50.0 * n * k}
            )  # fmt: skip
            got = {t: {f"{t}-{i}": [float(c)] for i, c in enumerate(outcomes(like, n, 0, t))} for t in TASKS}
            scores[run] = SampleScores(got)
    study = Study("apq", pd.DataFrame(rows), scores, {})
    table = measured_rows(study, OPTS)
    names = ["answers_per_question=1", "answers_per_question=4"]
    assert [(r.label, r.n) for r in table] == [(k, n) for k in names for n in (8, 16, 32)]
    assert all(r.cells[task].low < r.cells[task].high for r in table for task in TASKS)
    fits = curves.line_fits(study, OPTS)
    assert {label for label, _ in fits} == set(names)  # a fitted curve each
    figures = []
    monkeypatch.setattr(curves, "_save", lambda fig, stem: figures.append(fig) or [stem])
    monkeypatch.setattr(plt, "close", lambda fig: None)
    curves.plot_curves(study, table, fits, tmp_path / "curve", "caption")
    panel = figures[0].axes[0]  # aime24's accuracy: one line and one interval band per k
    lines = [line.get_label() for line in panel.get_lines() if line.get_label().startswith("answers")]
    assert [name.split(" (")[0] for name in lines] == names
    assert len(panel.collections) == 2
    text = "\n".join(trained_on(study, table))
    assert "## What each row trained on" in text
    assert "| answers_per_question=4 | 32 | 32 | 128 | 6,400 | 12,800 |" in text
