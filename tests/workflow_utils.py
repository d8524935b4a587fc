"""Run the real workflow with Snakemake in a scratch working directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO

SNAKEMAKE_TIMEOUT_S = 600


def make_workdir(path: Path, **overrides) -> Path:
    """A working directory with config/config.yaml = the repo's config + ``overrides``."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    # The tests compare builds by the archive's bytes: the tar is on unless a test says.
    config["bundle"]["archive"] = True
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    (path / "config").mkdir(parents=True, exist_ok=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment (this venv's bin first on PATH, so the rules find
    ``minivess-bundle``) of ``snakemake`` on the repo's Snakefile in ``workdir``."""
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    command = [
        shutil.which("snakemake", path=str(bindir)) or "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    return command, env


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``snakemake --snakefile <repo>/Snakefile --directory <workdir> ARGS``, bounded in time."""
    command, env = snakemake_command(workdir, *args)
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=SNAKEMAKE_TIMEOUT_S
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def _as_from_a_terminal() -> None:
    """In the child: SIGINT back to its default. A shell without job control starts
    background commands (``cmd &``, e.g. a CI script launched so) with SIGINT ignored, and
    the disposition is inherited: Python then installs no KeyboardInterrupt handler, so a
    Ctrl-C test would see Snakemake ignore SIGINT, which no user at a terminal sees."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    """Start snakemake in its own process group (so a test can SIGKILL it with its jobs),
    with SIGINT handled as under a terminal."""
    command, env = snakemake_command(workdir, *args)
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=_as_from_a_terminal,
    )


def wait_for(
    predicate,
    process: subprocess.Popen | None = None,
    timeout_s: float = SNAKEMAKE_TIMEOUT_S,
    interval_s: float = 0.05,
) -> None:
    """Poll ``predicate`` until it is true.

    Load-proof: the deadline is a generous bound on a hang (that of a whole snakemake run),
    never the expected duration; what ends the wait early is an event: ``process`` exiting
    before the condition holds fails at once, naming its exit status."""
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process is not None and process.poll() is not None and not predicate():
            raise AssertionError(f"the process exited ({process.returncode}) before the condition")
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (a hang)")
        time.sleep(interval_s)


def build_digest(workdir: Path) -> str:
    """The sha256 of the bundle archive a build produced, to compare runs (local, SLURM,
    container); checked against the file itself."""
    import hashlib
    import json

    summary = workdir / "results" / "bundle" / "minivess-0.1.0.json"
    if not summary.is_file():
        raise AssertionError(f"no bundle in {workdir}: {summary} is missing")
    recorded = json.loads(summary.read_text())["sha256"]
    archive = summary.with_suffix(".tar")
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    if actual != recorded:
        raise AssertionError(f"{archive} has sha256 {actual}, its summary says {recorded}")
    return actual


def run_snakemake_killable(
    workdir: Path, *args: str, timeout_s: int = SNAKEMAKE_TIMEOUT_S, check: bool = True
) -> subprocess.CompletedProcess:
    """Like :func:`run_snakemake`, bounded by ``timeout -s KILL`` (for runs whose jobs live
    outside this process tree, e.g. SLURM jobs): a hung run is killed, never waited on.
    Exit status 137 means the bound was hit."""
    command, env = snakemake_command(workdir, *args)
    command = ["timeout", "-s", "KILL", str(timeout_s), *command]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}"
            f"{', killed by timeout' if result.returncode == 137 else ''}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def release_tree(workdir: Path, into: Path) -> Path:
    """The EBRAINS-layout release (raw/, seg/, json/) a build's volumes came from, rebuilt
    from ``results/renamed/`` (staging is temporary; rename keeps the bytes untouched)."""
    from minivess_bundle.core.layout import RENAMED_ROOT
    from minivess_bundle.core.volumes import renamed_names, staging_names

    renamed = workdir / RENAMED_ROOT
    for image in sorted((renamed / "imagesTr").glob("mv[0-9][0-9].nii.gz")):
        vol = image.name.split(".")[0]
        for role, rel in renamed_names(vol).items():
            target = into / staging_names(vol)[role]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(renamed / rel, target)
    return into


@contextlib.contextmanager
def pinned_git_commit():
    """Builds inside record HEAD as it is now (MINIVESS_GIT_COMMIT), even if HEAD moves
    while a test module runs, so their archives stay comparable byte for byte."""
    import pytest

    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINIVESS_GIT_COMMIT", head or "no-git")
        yield
