"""What tables and figures call a model or a solution tier: ``{id: label}``, e.g.
``{"smollm2_135m_instruct": "SmolLM2-135M-Instruct", "answer_only": "answer only"}``.

Labels are presentation only: ``model.label`` and ``quality.label`` are outside the run key. Each
source below wins over the one before it:

1. the labels the runs logged as params (``model.label`` next to ``model.name``; none for runs
   logged before labels existed),
2. the config files as they are now (``label:`` in conf/model/*.yaml and conf/quality/*.yaml),
3. ``report.labels`` (``limo-exp report "report.labels={answer_only: answers only}"``).

An id without a label is shown as it is.
"""

from __future__ import annotations

from pathlib import Path

LABELLED = ("model", "quality")  # config groups whose ``name`` tables show by its label


def conf_labels(conf_dir: str | Path | None = None) -> dict[str, str]:
    """``name -> label`` of every option of the labelled groups in ``conf_dir`` (default: the
    package's conf/). An option whose name is interpolated (model=hub: the hub id) or that has no
    label is left out."""
    import yaml

    if conf_dir is None:
        from limo_exp import CONF_DIR

        conf_dir = CONF_DIR
    out: dict[str, str] = {}
    for group in LABELLED:
        for f in sorted(Path(conf_dir, group).glob("*.yaml")):
            d = yaml.safe_load(f.read_text()) or {}
            name, label = d.get("name"), d.get("label")
            if isinstance(name, str) and isinstance(label, str) and "${" not in name:
                out[name] = label
    return out


def logged_labels(frame) -> dict[str, str]:
    """``name -> label`` from the runs' params (a runs_frame, oldest first: the latest label wins)."""
    out: dict[str, str] = {}
    for group in LABELLED:
        name, label = f"{group}.name", f"{group}.label"
        if name not in frame.columns or label not in frame.columns:
            continue
        for n, lab in zip(frame[name], frame[label]):
            if isinstance(n, str) and isinstance(lab, str) and lab not in ("", "None"):
                out[n] = lab
    return out
