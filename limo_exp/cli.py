"""``limo-exp <command> [hydra overrides]``: run, plan, curate, distill, eval, report, compare, regrade,
reproduce, diff.

Each command is a Hydra app over the same config tree (conf/), so every override and
``--multirun`` works the same way for all of them.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from limo_exp.typed import hydra_quote

COMMANDS = {
    "run": "limo_exp.commands.run:main",
    "plan": "limo_exp.commands.plan:main",
    "curate": "limo_exp.commands.curate:main",
    "distill": "limo_exp.commands.distill:main",
    "eval": "limo_exp.commands.eval:main",
    "report": "limo_exp.commands.report:main",
    "compare": "limo_exp.commands.compare:main",
    "regrade": "limo_exp.commands.regrade:main",
    "reproduce": "limo_exp.commands.reproduce:main",
    "diff": "limo_exp.commands.diff:main",
}

USAGE = f"""usage: limo-exp {{{",".join(COMMANDS)}}} [hydra overrides] [--multirun]

  limo-exp run model=tiny_random data.n_samples=8 train.max_steps=2
  limo-exp run --multirun experiment=demo data.n_samples=8,16,32
  limo-exp plan --multirun sweep=less_is_more                 (cost and power before launch, no model)
  limo-exp curate pool=math_train pool.data_dir=../shared/data/pools eval=limo_paper eval.data_dir=../shared/data/eval
  limo-exp distill pool=arithmetic pool.n=64 model=smollm2_135m_instruct distill.mode=rationalize
  limo-exp eval model=tiny_random eval=limo_paper eval.data_dir=../shared/data/eval eval.limit=2
  limo-exp eval model=outputs/runs/<run_key>/checkpoint eval=limo_paper
  limo-exp report experiment=demo
  limo-exp compare <run A> <run B> experiment=demo      (run ids, run keys or "param=value;param=value")
  limo-exp regrade <run id | run key | folder>           (re-score stored responses, no model load)
  limo-exp reproduce <run id | run key> [--check]        (check, rerun from the MLflow record, compare)
  limo-exp diff <run A> <run B>                          (config, environment, data, results that differ)
"""


HYDRA_APPS = (
    "run",
    "curate",
    "distill",
    "eval",
    "report",
    "compare",
    "regrade",
)  # answer completion themselves
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # <org>/<name>
COMPLETION = ("-sc", "--shell-completion")


def checkpoint_overrides(args: list[str]) -> list[str]:
    """``model=<folder with config.json>`` is shorthand for ``model=local_path model.path=<folder>``;
    ``model=<org>/<name>[@<revision>]`` (no such folder here) for ``model=hub model.hub_id=<org>/<name>
    [model.revision=<revision>]``: any hub model without a YAML of its own."""
    out = []
    for a in args:
        key, _, value = a.partition("=")
        repo, _, revision = value.partition("@")
        if key == "model" and value and (Path(value) / "config.json").is_file():
            out += ["model=local_path", f"model.path={Path(value).resolve()}"]
        elif key == "model" and HUB_ID.fullmatch(repo) and not Path(value).exists():
            out += ["model=hub", f"model.hub_id={repo}"]
            out += [f"model.revision={hydra_quote(revision)}"] if revision else []
        else:
            out.append(a)
    return out


def compare_overrides(args: list[str]) -> list[str]:
    """``compare A B overrides...`` -> ``report.a='A' report.b='B' overrides...``: the first two
    arguments are always the sides (a selector such as ``quality.name=long`` looks like an override)."""
    if len(args) < 2 or any(a.startswith("-") for a in args[:2]):
        print(USAGE, file=sys.stderr)
        raise SystemExit("limo-exp compare needs two runs: limo-exp compare A B [overrides]")
    return [f"report.{k}={hydra_quote(v)}" for k, v in zip("ab", args[:2])] + args[2:]


def shell_completion(argv: list[str]) -> list[str] | None:
    """Hydra's tab completion through the dispatcher. ``limo-exp [<command>] -sc install=bash`` prints
    Hydra's script, which completes ``limo-exp`` by calling ``limo-exp -sc query=bash`` with the typed
    line in COMP_LINE: while the command word is being typed the answer is the command names (printed
    here, None returned); after it, the command's Hydra app answers for the rest of the line.
    Returns the argv to dispatch."""
    at = next(i for i, a in enumerate(argv) if a in COMPLETION)
    action = argv[at + 1] if at + 1 < len(argv) else ""
    command = argv[0] if argv[0] in HYDRA_APPS else "run"  # install / uninstall: any command's app will do
    if action.startswith("query"):
        line = os.environ.get("COMP_LINE", "")
        words = line.split()
        if len(words) < 2 or (len(words) == 2 and not line[-1:].isspace()) or words[1] not in COMMANDS:
            partial = words[1] if len(words) == 2 and not line[-1:].isspace() else ""
            print(
                ("\n" if action.endswith("fish") else " ").join(c for c in COMMANDS if c.startswith(partial))
            )
            return None
        command = words[1] if words[1] in HYDRA_APPS else "run"  # plan, reproduce, diff: run's overrides
        if words[1] in ("reproduce", "diff"):  # their run ids and flags are no overrides
            typing = [] if line[-1:].isspace() or len(words) < 3 else words[-1:]  # the word being typed
            kept = [w for w in words[2 : len(words) - len(typing)] if "=" in w]
            line = " ".join(words[:2] + kept + typing) + (" " if line[-1:].isspace() else "")
        os.environ["COMP_LINE"] = re.sub(r"^(\s*\S+\s+)\S+\s*", r"\1", line, count=1)  # drop the command
    return [command, *argv[at:]]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in COMPLETION for a in argv):
        argv = shell_completion(argv)
        if argv is None:
            return
        name, rest = "limo-exp", argv[1:]  # Hydra names the completed program after sys.argv[0]
    elif not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
            raise SystemExit(2)
        raise SystemExit(0)
    else:
        rest = compare_overrides(argv[1:]) if argv[0] == "compare" else argv[1:]
        name, rest = f"limo-exp {argv[0]}", checkpoint_overrides(rest)
    module, func = COMMANDS[argv[0]].split(":")
    import importlib

    sys.argv = [name, *rest]
    getattr(importlib.import_module(module), func)()


if __name__ == "__main__":
    main()
