"""Shared fixtures: repository paths and small synthetic staging trees; the CI guard.

**No silent skips in CI.** A test that needs SLURM, podman, MONAI/torch, bagit, DVC, root...
asks for it with :func:`require` (a Python module) or :func:`require_tool` (an executable), or
reports what is missing with :func:`unavailable`. Where ``CI`` is set (``.ci/run`` exports
``CI=true``) a missing prerequisite is a failure; elsewhere it is a skip. And under CI any skip
that still happens (an ``importorskip``, a skip marker, a module-level skip) fails the run:
:func:`pytest_runtest_makereport` turns a skipped test into a failure and
:func:`pytest_sessionfinish` fails the session on any skip left (e.g. at collection).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
REAL_MASK = REPO / "tests" / "data" / "mv68_y.nii.gz"
REAL_MASK_SHA256 = "833d06e62f70803ed6b39c2cdc464e86460b931eebc4d3ed295d0b1a92dede8a"


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root``, by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def tiny_staging(tmp_path: Path) -> Path:
    """An EBRAINS-layout staging tree with three tiny synthetic volumes and the licence."""
    from minivess_bundle.fetch.synthetic import write_synthetic_licence, write_synthetic_volume

    staging = tmp_path / "staging"
    for vol in ("mv01", "mv02", "mv39"):
        write_synthetic_volume(staging, vol, seed=5, size_xy=24, max_z=8)
    write_synthetic_licence(staging)
    return staging


# --- hypothesis profiles ---------------------------------------------------------------------


def _register_hypothesis_profiles() -> None:
    """``ci``: derandomised (same examples every run), bounded, no deadline; ``dev``: random.

    Loaded from ``HYPOTHESIS_PROFILE``, else ``ci`` under CI and ``dev`` elsewhere. Tests bound
    their own ``max_examples`` further with ``@settings`` where a case is costly.
    """
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # the property tests ask for it with require("hypothesis")
        return
    quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile(
        "ci",
        derandomize=True,
        max_examples=20,
        deadline=None,
        suppress_health_check=quiet,
        database=None,
        print_blob=True,
    )
    settings.register_profile("dev", max_examples=20, deadline=None, suppress_health_check=quiet)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev"))


# --- the CI guard -----------------------------------------------------------------------------


def in_ci() -> bool:
    """True where ``CI`` is set to anything but an empty/false value (GitHub, GitLab, .ci/run)."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def unavailable(reason: str) -> None:
    """A prerequisite is missing: fail under CI, skip elsewhere. Never returns."""
    if in_ci():
        pytest.fail(f"prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require(module: str, hint: str = "") -> ModuleType:
    """Import ``module`` (e.g. ``"torch"``, ``"bagit"``); missing -> :func:`unavailable`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable(f"cannot import {module} ({exc}){' — ' + hint if hint else ''}")
        raise  # unreachable: unavailable() raises


def require_tool(*tools: str, hint: str = "") -> list[str]:
    """The paths of executables (e.g. ``"podman"``, ``"sinfo", "sacct"``); missing ->
    :func:`unavailable`."""
    paths = [shutil.which(tool) for tool in tools]
    missing = [tool for tool, path in zip(tools, paths, strict=True) if path is None]
    if missing:
        unavailable(f"{', '.join(missing)} not on PATH{' — ' + hint if hint else ''}")
    return [str(path) for path in paths]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a skipped test (however it skipped) is reported as failed, with its reason."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (a skip is a failure in CI): {reason}"


def pytest_sessionfinish(session, exitstatus):
    """Under CI any skip still counted (a module skipped at collection) fails the session."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if in_ci() and skipped and session.exitstatus in (0, pytest.ExitCode.NO_TESTS_COLLECTED):
        reporter.write_line(
            f"CI=true: {len(skipped)} skip(s) reported; a skip is a failure in CI", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_register_hypothesis_profiles()
