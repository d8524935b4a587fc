"""The CI guard in conftest.py: under CI=true a missing prerequisite, or any skip, fails the run.

Each test runs a real pytest in a subprocess on a tiny test module next to a copy of this
repository's conftest.py, once with CI=true and once without.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

NEEDS_TOOL = """
from conftest import require_tool

def test_needs_a_tool_nobody_has():
    require_tool("minivess-no-such-tool-x9")
"""
NEEDS_MODULE_AT_IMPORT = """
from conftest import require

require("minivess_no_such_module_x9")

def test_never_runs():
    pass
"""
PLAIN_SKIPS = """
import pytest

def test_importorskip():
    pytest.importorskip("minivess_no_such_module_x9")

@pytest.mark.skip(reason="skipped by a marker")
def test_marker():
    pass

def test_passes():
    assert 1 + 1 == 2
"""
MODULE_SKIP = """
import pytest

pytest.importorskip("minivess_no_such_module_x9")

def test_never_runs():
    pass
"""


def run_pytest(tmp_path: Path, module: str, ci: str | None) -> subprocess.CompletedProcess:
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_tiny.py").write_text(module)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test_tiny.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_tool_fails_under_ci_and_skips_elsewhere(tmp_path):
    ci = run_pytest(tmp_path, NEEDS_TOOL, "true")
    assert ci.returncode == 1, ci.stdout
    assert "prerequisite missing under CI=true: minivess-no-such-tool-x9 not on PATH" in ci.stdout
    assert "1 failed" in ci.stdout
    local = run_pytest(tmp_path, NEEDS_TOOL, None)
    assert local.returncode == 0, local.stdout
    assert "1 skipped" in local.stdout and "failed" not in local.stdout


def test_missing_module_at_import_fails_collection_under_ci(tmp_path):
    ci = run_pytest(tmp_path, NEEDS_MODULE_AT_IMPORT, "true")
    assert ci.returncode != 0, ci.stdout
    assert "cannot import minivess_no_such_module_x9" in ci.stdout
    local = run_pytest(tmp_path, NEEDS_MODULE_AT_IMPORT, "")  # an empty CI is not CI
    assert local.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, local.stdout
    assert "1 skipped" in local.stdout


def test_any_skip_in_a_test_is_a_failure_under_ci(tmp_path):
    ci = run_pytest(tmp_path, PLAIN_SKIPS, "1")
    assert ci.returncode == 1, ci.stdout
    # the importorskip fails the call, the marker fails the setup (an "error"); none skipped
    assert (
        "1 failed, 1 passed, 1 error" in ci.stdout and "skipped" not in ci.stdout.splitlines()[-1]
    )
    assert "skipped under CI=true (a skip is a failure in CI)" in ci.stdout
    assert "skipped by a marker" in ci.stdout
    local = run_pytest(tmp_path, PLAIN_SKIPS, "false")
    assert local.returncode == 0 and "1 passed, 2 skipped" in local.stdout, local.stdout


def test_a_module_skipped_at_collection_fails_the_session_under_ci(tmp_path):
    ci = run_pytest(tmp_path, MODULE_SKIP, "true")
    assert ci.returncode == pytest.ExitCode.TESTS_FAILED, ci.stdout
    assert "CI=true: 1 skip(s) reported; a skip is a failure in CI" in ci.stdout
    local = run_pytest(tmp_path, MODULE_SKIP, None)
    assert local.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, local.stdout
    assert "1 skipped" in local.stdout


def test_ci_run_exports_ci_true_before_the_tests():
    script = (REPO / ".ci" / "run").read_text()
    assert "export CI=true" in script
    assert script.index("export CI=true") < script.index("python -m pytest")
