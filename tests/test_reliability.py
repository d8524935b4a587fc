"""Interrupted and concurrent runs: nothing partial at a final path, reruns complete identically."""

from __future__ import annotations

import gzip
import json
import os
import signal

import pytest
from workflow_utils import make_workdir, run_snakemake, start_snakemake, wait_for

pytestmark = pytest.mark.workflow
SMALL = {
    "synthetic": {"size_xy": 64, "max_z": 20},
    "volumes": ["mv01", "mv02", "mv03", "mv04", "mv05", "mv06"],
    "resample": {"target_spacing_um": "native"},
    "drift": {"types": ["intensity", "topology"], "levels": [1]},
}
ARCHIVE = "results/bundle/minivess-0.1.0.tar"


def assert_every_final_file_is_whole(results):
    """Every visible file is complete: gzip streams decode to the end, JSON parses."""
    for path in results.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.name.endswith(".gz"):
            with gzip.open(path) as handle:
                while handle.read(1 << 20):
                    pass
        elif path.suffix == ".json":
            json.loads(path.read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("reference"), **SMALL)
    run_snakemake(workdir, "--cores", "2", "all")
    return (workdir / ARCHIVE).read_bytes()


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_bytes(reference, tmp_path):
    workdir = make_workdir(tmp_path / "killed", **SMALL)
    run = start_snakemake(workdir, "--cores", "2", "all")
    staged = workdir / "results" / "staging" / "raw"
    wait_for(lambda: staged.is_dir() and len(list(staged.glob("mv*.nii.gz"))) >= 2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL
    assert not (workdir / "results" / "renamed_inventory.json").exists()  # really mid-run
    assert_every_final_file_is_whole(workdir / "results")
    # A plain rerun says what Snakemake needs: --unlock (a lock left by the kill) and/or
    # --rerun-incomplete (jobs that were running); the README documents both.
    refused = run_snakemake(workdir, "--cores", "2", "all", check=False)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and ("--unlock" in said or "--rerun-incomplete" in said)
    run_snakemake(workdir, "--unlock")
    rerun = run_snakemake(workdir, "--cores", "2", "all", "--rerun-incomplete")
    assert "Nothing to be done" not in rerun.stdout + rerun.stderr
    assert (workdir / ARCHIVE).read_bytes() == reference


def test_second_instance_in_the_same_directory_is_refused(tmp_path):
    workdir = make_workdir(tmp_path / "locked", **SMALL)
    first = start_snakemake(workdir, "--cores", "1", "all")
    try:
        locks = workdir / ".snakemake" / "locks"
        wait_for(lambda: locks.is_dir() and any(locks.iterdir()))
        # A plain second run is refused (by the lock, or earlier by the files the first is
        # writing); even one told to --rerun-incomplete those files meets the lock.
        plain = run_snakemake(workdir, "--cores", "1", "all", check=False)
        said = plain.stdout + plain.stderr
        assert plain.returncode != 0
        assert "Directory cannot be locked" in said or "IncompleteFilesException" in said
        forced = run_snakemake(workdir, "--cores", "1", "all", "--rerun-incomplete", check=False)
        assert forced.returncode != 0
        assert "Directory cannot be locked" in forced.stdout + forced.stderr
        assert first.poll() is None  # the first run was not disturbed
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert_every_final_file_is_whole(workdir / "results")
