"""One owner per fact: no import cycle in the package, each identity literal spelled once.

Static checks over ``src/`` and ``workflow/`` (``ast`` and text), so they cost
milliseconds and fail with the module or literal at fault.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "minivess_bundle"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, at top level or inside functions alike
    (a lazy import is still an edge: it runs, and a cycle through it is still a cycle).
    A package's ``__init__`` importing its own submodules is how a package re-exports
    them, not an edge back into a cycle, so it is left out."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            stem = f"{base}.{node.module}" if node.level and node.module else node.module or base
            targets = [stem, *(f"{stem}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if target in modules and target != name:
                found.add(target)
    if path.name == "__init__.py":
        found = {t for t in found if not t.startswith(name + ".")}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), as sorted lists."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_lazy_imports():
    graph = import_graph()
    assert "minivess_bundle.drift.prevalence" in graph["minivess_bundle.drift.plan"]  # lazy
    assert "minivess_bundle.drift.datasets" in graph["minivess_bundle.drift.prevalence"]
    assert "minivess_bundle.core.errors" in graph["minivess_bundle.core.config"]
    assert len(graph) >= 60


def test_the_package_has_no_import_cycle():
    """drift/ had variant -> manifest -> prevalence -> variant and plan -> prevalence."""
    assert cycles(import_graph()) == []


#: the most lines a module under src/ may have (STYLE.md: a module is a few honest functions)
MODULE_LINES = 700


def oversized(paths, limit: int = MODULE_LINES) -> list[tuple[int, str]]:
    """``(lines, path)`` of every file in ``paths`` over ``limit`` lines, largest first."""
    sizes = [(len(Path(p).read_text(encoding="utf-8").splitlines()), str(p)) for p in paths]
    return sorted((s for s in sizes if s[0] > limit), reverse=True)


def test_module_size_limit_is_700_lines_inclusive(tmp_path):
    at, over = tmp_path / "at.py", tmp_path / "over.py"
    at.write_text("x = 1\n" * 700)
    over.write_text("x = 1\n" * 701)
    assert oversized([at, over]) == [(701, str(over))]


def test_no_module_under_src_exceeds_700_lines():
    paths = sorted(SRC.rglob("*.py"))
    biggest = sorted(
        (
            (len(p.read_text(encoding="utf-8").splitlines()), str(p.relative_to(REPO)))
            for p in paths
        ),
        reverse=True,
    )[:5]
    assert oversized(paths) == [], f"modules over {MODULE_LINES} lines; the biggest: {biggest}"


#: Facts with one owner: (what, the exact text, the one file under src/ or workflow/ that
#: spells it). Everything else imports the owner's constant.
OWNED = [
    ("EBRAINS id", "bf268b89-1420-476b-b428-b85a913eb523", "src/minivess_bundle/core/dataset.py"),
    ("DOI", "10.1038/s41597-023-02048-8", "src/minivess_bundle/core/dataset.py"),
    ("licence", "CC BY-NC-SA 4.0", "src/minivess_bundle/core/dataset.py"),
    ("licence URL", "licenses/by-nc-sa/4.0", "src/minivess_bundle/core/dataset.py"),
    ("licence SPDX", "CC-BY-NC-SA-4.0", "src/minivess_bundle/core/dataset.py"),
    ("an author", "Teikari", "src/minivess_bundle/core/dataset.py"),
    ("the other author", "Poon", "src/minivess_bundle/core/dataset.py"),
    ("title", "rodent cerebrovasculature from in vivo", "src/minivess_bundle/core/dataset.py"),
    ("nnU-Net id", "501", "src/minivess_bundle/core/dataset.py"),
    ("mask labels", '"vessel": 1', "src/minivess_bundle/core/dataset.py"),
    ("image channel", '"0": "two-photon"', "src/minivess_bundle/core/dataset.py"),
    ("bag name prefix", '"minivess-"', "src/minivess_bundle/core/layout.py"),
    (
        "bag sections",
        '"raw", "processed", "drift", "quarantine"',
        "src/minivess_bundle/core/layout.py",
    ),
    ("config schema", "config.schema.yaml", "src/minivess_bundle/core/config.py"),
]
SCANNED = (".py", ".smk", ".yaml", ".yml", ".json", ".rst", ".md")


def occurrences(text: str, content: str) -> int:
    """How often ``text`` occurs in ``content``; a number must stand alone (``501``, not
    ``1501``)."""
    import re

    if text.isdigit():
        return len(re.findall(rf"(?<![0-9]){re.escape(text)}(?![0-9])", content))
    return content.count(text)


def spellings(text: str) -> dict[str, int]:
    """Where ``text`` occurs in src/ and workflow/ (and the Snakefile): file -> count."""
    found = {}
    files = [REPO / "Snakefile", *(REPO / "src").rglob("*"), *(REPO / "workflow").rglob("*")]
    for path in files:
        if path.is_file() and (path.suffix in SCANNED or path.name == "Snakefile"):
            count = occurrences(text, path.read_text(encoding="utf-8", errors="replace"))
            if count:
                found[path.relative_to(REPO).as_posix()] = count
    return found


def test_each_owned_fact_is_spelled_once_by_its_owner():
    """The dataset identity in dataset.py, the bag's name and sections in layout.py, the
    schema's path in config.py: a second spelling anywhere is a copy that can drift."""
    wrong = {}
    for what, text, owner in OWNED:
        found = spellings(text)
        if found != {owner: 1}:
            wrong[what] = found
    assert wrong == {}


def test_the_counter_counts_every_copy_and_numbers_standing_alone():
    assert occurrences("501", "id 501, 1501, 5010, (501)") == 2
    assert occurrences("Teikari", "Teikari P. and Teikari, P.") == 2
    assert spellings("Teikari") == {"src/minivess_bundle/core/dataset.py": 1}


def test_the_core_imports_no_stage():
    """core/ is what every stage uses; it imports none of them (lazily neither)."""
    graph = import_graph()
    core = {m: deps for m, deps in graph.items() if m.startswith("minivess_bundle.core")}
    assert len(core) >= 10
    outside = {
        m: sorted(d for d in deps if not d.startswith("minivess_bundle.core"))
        for m, deps in core.items()
    }
    assert {m: d for m, d in outside.items() if d} == {}


def test_the_package_top_level_holds_subpackages_and_a_few_entry_modules():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    # the command line, the workflow's memory estimates, the checked config, and the fixtures
    # downstream test suites import (minivess_bundle.testing, like numpy.testing)
    assert modules == ["cli", "resources", "settings", "testing"]
    assert {"core", "fetch", "validate", "resample", "drift", "bundle", "report", "consumers"} <= {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()
    }
