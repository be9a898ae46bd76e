"""``limo-exp report``: the MLflow runs of a study -> results_dir/<study>/report.md with curves
(intervals, fits), paper tables (Markdown, LaTeX), cost, and what is significant in words.

limo-exp report experiment=demo [report.reported=[limo_32b,s1_32b]] [report.n_boot=10000]
    ["report.labels={smollm2_135m_instruct: 'SmolLM2 (135M)'}"]   (over conf/'s and the runs' labels)
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from limo_exp.commands.common import command, parse
from limo_exp.tracking.names import mask


def run_report(cfg: DictConfig) -> dict:
    from limo_exp.analysis.labels import conf_labels
    from limo_exp.analysis.report import report

    c = parse(cfg).config
    out = report(c.tracking, c.report, c.paths.results_dir, c.paths.cache_dir, labels=conf_labels())
    uri = c.tracking.uri
    print(f"\n{out['runs']} runs of study {c.tracking.experiment!r}")
    print(Path(out["table"]).read_text())
    print(f"MLflow store : {mask(uri)}")
    print("\n".join(out["findings"]))
    print(f"\nreport       : {out['report']}")
    print(f"curve        : {out['curve']} (and .pdf)")
    print(f"tables       : {out['table']}, {out['latex']}")
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///")).resolve()
        print(f"open the UI  : mlflow ui --backend-store-uri sqlite:///{store} --host 127.0.0.1 --port 5000")
    else:
        print(f"open the UI  : {mask(uri)}")
    return out


main = command(run_report)
