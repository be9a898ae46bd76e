"""``limo-exp <command> [hydra overrides]``: run, curate, eval, report.

Each command is a Hydra app over the same config tree (conf/), so every override and
``--multirun`` works the same way for all of them.
"""

from __future__ import annotations

import sys

COMMANDS = {
    "run": "limo_exp.commands.run:main",
    "curate": "limo_exp.commands.curate:main",
    "eval": "limo_exp.commands.eval:main",
    "report": "limo_exp.commands.report:main",
}

USAGE = f"""usage: limo-exp {{{",".join(COMMANDS)}}} [hydra overrides] [--multirun]

  limo-exp run model=tiny_random data.n_samples=8 train.max_steps=2
  limo-exp run --multirun experiment=demo data.n_samples=8,16,32
  limo-exp curate pool=math_train pool.data_dir=../shared/data/pools eval=limo_paper eval.data_dir=../shared/data/eval
  limo-exp eval model=tiny_random eval=limo_paper eval.data_dir=../shared/data/eval eval.limit=2
  limo-exp eval model=outputs/runs/<run_key>/checkpoint eval=limo_paper
  limo-exp report experiment=demo
"""


def checkpoint_overrides(args: list[str]) -> list[str]:
    """``model=<folder with config.json>`` is shorthand for ``model=local_path model.path=<folder>``."""
    from pathlib import Path

    out = []
    for a in args:
        key, _, value = a.partition("=")
        if key == "model" and value and (Path(value) / "config.json").is_file():
            out += ["model=local_path", f"model.path={Path(value).resolve()}"]
        else:
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
            raise SystemExit(2)
        raise SystemExit(0)
    module, func = COMMANDS[argv[0]].split(":")
    import importlib

    sys.argv = [f"limo-exp {argv[0]}"] + checkpoint_overrides(argv[1:])
    getattr(importlib.import_module(module), func)()


if __name__ == "__main__":
    main()
