"""The package's layout: imports go one way (commands -> stages -> data / config), no package
imports another in a circle, and no module outgrows ~300 lines. The README stays a front door:
short, its layout table matching the tree, every command and link it shows real."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "limo_exp"
# the bottom layer, the stages (in data-flow order) and the commands on top
LAYERS = {
    "config": 0,
    "config_eval": 0,
    "typed": 0,
    "identity": 0,
    "stopping": 0,
    "hardware": 0,
    "data": 0,
    "curation": 1,
    "selection": 1,
    "training": 1,
    "evaluation": 1,
    "tracking": 1,
    "analysis": 1,
    "distill": 1,
    "commands": 2,
    "cli": 3,
    "__main__": 3,
}
MAX_LINES = 320


def _unit(module: str) -> str:
    """``limo_exp.data.pools`` -> ``data``; ``limo_exp.config`` -> ``config``; the package root -> ``root``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def _imports(path: Path) -> set[str]:
    """Every limo_exp module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("limo_exp")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("limo_exp"):
            for a in node.names:  # `from limo_exp.data import pools` imports the module limo_exp.data.pools
                sub = f"{node.module}.{a.name}"
                is_module = (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists() or (
                    PKG.parent / sub.replace(".", "/")
                ).is_dir()
                found.add(sub if is_module else node.module)
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        graph[name] = _imports(path)
    return graph


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _graph()} - {"root"}
    assert units == set(LAYERS), f"add new packages to LAYERS: {units ^ set(LAYERS)}"


def test_imports_go_one_way():
    upward = []
    for module, imports in _graph().items():
        for imp in imports:
            src, dst = _unit(module), _unit(imp)
            if dst == "root":
                continue  # limo_exp.CONF_DIR
            if src != "root" and LAYERS[dst] > LAYERS[src]:
                upward.append(f"{module} -> {imp}")
    assert upward == [], "imports must go commands -> stages -> data/config:\n" + "\n".join(upward)


def test_config_is_the_root():
    """config (its sections and its parser) import nothing else of limo_exp: every layer may read it."""
    for module, imports in _graph().items():
        if _unit(module) in ("config", "config_eval", "typed"):
            assert {_unit(i) for i in imports} <= {"typed", "config_eval"}, module


def test_no_circular_imports_between_packages():
    edges: dict[str, set[str]] = {}
    for module, imports in _graph().items():
        src = _unit(module)
        edges.setdefault(src, set()).update(_unit(i) for i in imports if _unit(i) not in (src, "root"))
    assert _cycle(edges) is None, f"circular imports between packages: {_cycle(edges)}"


def test_no_circular_imports_between_modules():
    """Also inside a package (a package's __init__ importing its own modules is not a cycle)."""
    graph = _graph()
    edges = {m: {i for i in imports if not m.startswith(i + ".") and i != m} for m, imports in graph.items()}
    assert _cycle(edges) is None, f"circular imports: {_cycle(edges)}"


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_outgrows_300_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{path}: split it into two modules"


def test_readme_layout_table_matches_the_tree():
    """Every package and top-level module of limo_exp has a row in the README's layout table, and
    every limo_exp path the table names exists."""
    readme = (PKG.parent / "README.md").read_text()
    table = readme[readme.index("## Layout") :].split("\n## ")[0]
    named = set(re.findall(r"`(limo_exp/[\w/.]*)`", table))
    for p in sorted(PKG.iterdir()):
        if p.name.startswith("__") or p.name == "conf" or p.name == "typed.py":
            continue
        assert f"limo_exp/{p.name}" + ("/" if p.is_dir() else "") in named, f"README layout misses {p.name}"
    for path in named:
        assert (PKG.parent / path).exists(), f"README names {path}, which does not exist"
    for p in PKG.rglob("*.py"):  # every module of a package is named in its row
        if p.parent != PKG and p.name != "__init__.py" and p.parent.name != "tasks":
            folder = p.parent.relative_to(PKG).as_posix()
            row = next(r for r in table.splitlines() if r.startswith(f"| `limo_exp/{folder}/` |"))
            assert f"`{p.name}`" in row, f"README layout row of {folder}/ misses {p.name}"


ROOT = PKG.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250  # the front door; detail goes to docs/
COMMAND = re.compile(r"(?:^|[\s`(\"/])limo-exp\s+([a-z][\w-]*)|-m\s+limo_exp\s+([a-z][\w-]*)")  # limo-exp run
MAKE = re.compile(r"(?:^|[\s`(;&])make\s+([a-z][\w-]*)")  # make demo


def _code(text: str) -> list[str]:
    """The fenced blocks and inline code spans of a Markdown text: where commands are shown."""
    fenced = re.findall(r"^```.*?^```", text, flags=re.MULTILINE | re.DOTALL)
    rest = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return fenced + re.findall(r"`([^`\n]+)`", rest)


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))


def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES, "README.md is the front door: move detail to docs/"
    assert "make demo" in readme and "make test" in readme


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_shown_exists(doc):
    """Every `limo-exp <command>` (or `-m limo_exp <command>`) and `make <target>` a page shows in its
    code is a command of the CLI and a target of the Makefile."""
    from limo_exp.cli import COMMANDS

    targets = _make_targets()
    for code in _code(doc.read_text()):
        for cmd in (a or b for a, b in COMMAND.findall(code)):
            assert cmd in COMMANDS, f"{doc.name} shows `limo-exp {cmd}`; commands: {sorted(COMMANDS)}"
        for target in MAKE.findall(code):
            assert target in targets, f"{doc.name} shows `make {target}`; Makefile targets: {sorted(targets)}"


def test_the_command_finder_finds_commands():
    text = "limo-exp and TRL; `limo-exp eval x=1`\n```\n.venv/bin/limo-exp run\npython -m limo_exp curate\nmake venv && make demo\n```\n"
    code = _code(text)
    assert sorted(a or b for s in code for a, b in COMMAND.findall(s)) == ["curate", "eval", "run"]
    assert [m for s in code for m in MAKE.findall(s)] == ["venv", "demo"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    """Every relative link of the README and the docs pages names a file that exists."""
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{doc.relative_to(ROOT)} links {target}, which does not exist"


def test_every_docs_page_is_a_linked_topic():
    """Every docs page is reachable from the README and starts with its title and a one-line summary."""
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"
        lines = page.read_text().splitlines()
        assert lines[0].startswith("# ") and lines[1] == "" and lines[2].strip(), (
            f"{page.name}: title, then a summary"
        )
