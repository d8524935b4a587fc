"""The README a newcomer reads and the docs site: short, true to the repository, built strictly.

The README stays a front page (≤ 300 lines: what it is, the two quick-start commands, what you
get, how to use the bundle, where to read more); details live in ``docs/``, which ``mkdocs
build --strict`` builds with every broken link or anchor an error. Dated measurements belong in
``bench/RESULTS.md``, so the docs carry no load averages, commit hashes or branch names.
"""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO, require

README = REPO / "README.md"
DOCS = REPO / "docs"

#: A notebook's traces that date a page: the machine's load, a commit, a branch, "was N x".
NOTEBOOK = re.compile(
    r"load average|\bload ~|\bbranch issue-|\bissue-\d+[a-z]?\b|this README's commit"
    r"|(?<![\w-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,12}(?![\w-])"
)


def _prose(text: str) -> str:
    """``text`` without code (commands and messages may print hashes and checksums)."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def test_readme_is_a_front_page_of_at_most_300_lines_with_the_two_quick_start_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in quick.splitlines() if line and not line.startswith(("#", " "))]
    assert (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -c requirements/lock.txt"
        " -e '.[workflow,test]' && snakemake --cores 2 all" in commands
    )
    assert ". .venv/bin/activate && python -m pytest -n 2 --dist loadfile" in commands
    # the test command is the one CI runs
    assert "python -m pytest -n 2 --dist loadfile" in (REPO / ".ci/run").read_text()


def test_every_local_link_of_the_readme_exists_and_every_docs_page_is_in_the_site():
    text = README.read_text()
    targets = re.findall(r"\]\(((?!https?:|#)[^)\s]+)\)", text)
    assert targets, "the README links its docs pages"
    missing = [t for t in targets if not (REPO / t.split("#")[0]).exists()]
    assert missing == []
    nav = (REPO / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert [p for p in pages if p not in nav] == []


def test_docs_and_readme_carry_no_load_averages_commit_hashes_or_branch_names():
    found = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for n, line in enumerate(_prose(page.read_text()).splitlines(), 1):
            if NOTEBOOK.search(line):
                found.append(f"{page.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert found == []


def test_notebook_pattern_catches_each_trace_it_names_and_spares_digests():
    for trace in ("at load average ~6", "branch issue-15d", "commit 0cc1a45 + this text"):
        assert NOTEBOOK.search(trace), trace
    for clean in ("dataset bf268b89-1420", "md5 be49b3c0c462446c4336cdc5f2781e36", "level 5"):
        assert not NOTEBOOK.search(clean), clean


def test_docs_site_builds_strictly_with_links_and_anchors_checked(tmp_path):
    require("mkdocs", "pip install -e '.[docs]'")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "site" / "drift" / "index.html").exists()
