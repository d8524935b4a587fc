"""The workflow on a real SLURM cluster through profiles/slurm (snakemake-executor-plugin-slurm).

Needs a cluster that answers `sinfo` and has accounting (`sacct`); CI starts a single-node one
with `bash .ci/slurm.sh up`. Elsewhere these tests are skipped; under CI they fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, require, unavailable
from workflow_utils import build_digest, make_workdir, run_snakemake, run_snakemake_killable

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]
TINY = {
    "synthetic": {"size_xy": 16, "max_z": 8},
    "volumes": ["mv01", "mv02", "mv39"],
    "drift": {"types": ["intensity", "topology"], "levels": [1]},
}
# A SLURM run polls job states; 2 s between checks keeps the tiny run short (the plugin's
# default of 40 s suits real clusters and stays in the profile).
SLURM_ARGS = (
    "--workflow-profile",
    str(REPO / "profiles" / "slurm"),
    "--slurm-init-seconds-before-status-checks",
    "2",
)
RUN_BOUND_S = 480
PROBE_S = 120  # bounds a hung controller; a busy one answers late, not never


def _slurm_problem() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    for tool in ("sinfo", "sbatch", "sacct"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (CI: bash .ci/slurm.sh up)"
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=PROBE_S
        )
        accounting = subprocess.run(
            ["sacct", "-n", "-X", "-S", "now-1minutes"],
            capture_output=True,
            text=True,
            timeout=PROBE_S,
        )
    except subprocess.TimeoutExpired:
        return f"sinfo/sacct did not answer within {PROBE_S} s"
    if states.returncode != 0 or not re.search(r"^(idle|mixed|allocated)$", states.stdout, re.M):
        return f"no SLURM node up (sinfo: {states.stdout.strip() or states.stderr.strip()})"
    if accounting.returncode != 0:
        return f"no SLURM accounting (sacct: {accounting.stderr.strip()})"
    return None


_PROBLEM = _slurm_problem()


@pytest.fixture(scope="module", autouse=True)
def _slurm_ready():
    """No cluster or no plugin: a failure under CI, a skip elsewhere."""
    if _PROBLEM:
        unavailable(f"SLURM unavailable: {_PROBLEM}")
    require("snakemake_executor_plugin_slurm", hint="the workflow extra")


def _run_id(output: str) -> str:
    match = re.search(r"^SLURM run ID: (\S+)$", output, re.M)
    assert match, f"no SLURM run ID in the output:\n{output[-3000:]}"
    return match.group(1)


def _sacct_jobs(run_id: str) -> list[dict[str, str]]:
    """Every SLURM job named ``run_id`` (the plugin names all jobs of a run after it)."""
    result = subprocess.run(
        [
            "sacct",
            "-X",
            "-n",
            "--parsable2",
            "--name",
            run_id,
            "-S",
            "now-1days",
            "--format",
            "JobIDRaw,JobName,Comment,State",
        ],
        capture_output=True,
        text=True,
        timeout=PROBE_S,
        check=True,
    )
    keys = ("id", "name", "comment", "state")
    return [dict(zip(keys, line.split("|"), strict=True)) for line in result.stdout.splitlines()]


def _planned_jobs(output: str) -> list[tuple[str, str]]:
    """(rule, wildcard values joined by "_") of every non-local job a run printed: a
    ``rule NAME:`` (or ``checkpoint NAME:``) line followed by indented ``key: value`` lines."""
    jobs, current = [], None
    for line in output.splitlines():
        if match := re.fullmatch(r"(?:rule|checkpoint) (\w+):", line):
            current = [match.group(1), ""]
            jobs.append(current)
        elif current and line.startswith("    wildcards: "):
            pairs = line.removeprefix("    wildcards: ").split(", ")
            current[1] = "_".join(pair.split("=", 1)[1] for pair in pairs)
        elif not line.startswith("    "):
            current = None
    return [tuple(job) for job in jobs]


def _comment(rule: str, wildcards: str) -> str:
    """The --comment the plugin gives a job (rule_<rule>[_wildcards_<values>])."""
    return f"rule_{rule}_wildcards_{wildcards}" if wildcards else f"rule_{rule}"


def _cancel(run_id: str) -> None:
    subprocess.run(["scancel", "--name", run_id], capture_output=True, timeout=PROBE_S)


@pytest.fixture(scope="module")
def local_digest(tmp_path_factory) -> str:
    workdir = make_workdir(tmp_path_factory.mktemp("local"), **TINY)
    run_snakemake(workdir, "--cores", "2", "all")
    return build_digest(workdir)


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("slurm"), **TINY)
    result = run_snakemake_killable(workdir, *SLURM_ARGS, "all", timeout_s=RUN_BOUND_S, check=False)
    output = result.stdout + result.stderr
    run_id = re.search(r"^SLURM run ID: (\S+)$", output, re.M)
    if run_id:
        _cancel(run_id.group(1))  # nothing left behind if the run was killed
    assert result.returncode == 0, f"SLURM run failed ({result.returncode}):\n{output[-6000:]}"
    return workdir, output


#: Rules whose jobs go to SLURM; every other job of the build is a localrule.
SUBMITTED_RULES = {
    "fetch",
    "validate",
    "resample",
    "drift",
    "bundle",
    "verify_bundle",
    "report_figures",
    "report_mips",
}
LOCAL_RULES = {
    "all",
    "fetch_licence",
    "rename",
    "rename_licence",
    "renamed_inventory",
    "validation_report",
    "processed_metadata",
    "drift_set",
    "drift_manifest",
}  # (drift_select, local too, is planned only with >= 7 valid volumes)


def test_only_heavy_jobs_are_submitted_to_slurm(slurm_run):
    workdir, output = slurm_run
    planned = _planned_jobs(output)
    # only per-volume heavy work and the bundle's jobs are submitted ...
    assert {rule for rule, _ in planned} == SUBMITTED_RULES
    volumes = len(TINY["volumes"])
    report = json.loads((workdir / "results" / "validation_report.json").read_text())
    per_rule = Counter(rule for rule, _ in planned)
    assert [per_rule["fetch"], per_rule["validate"]] == [volumes] * 2
    assert per_rule["resample"] == len(report["valid"]) >= 1  # quarantined ones stop there
    assert [
        per_rule[rule] for rule in ("bundle", "verify_bundle", "report_figures", "report_mips")
    ] == [1] * 4
    # ... the tiny jobs run in the main process
    local = set(re.findall(r"^local(?:rule|checkpoint) (\w+):", output, re.M))
    assert local == LOCAL_RULES, local
    jobs = _sacct_jobs(_run_id(output))
    assert sorted(job["comment"] for job in jobs) == sorted(_comment(*job) for job in planned)
    assert {job["state"] for job in jobs} == {"COMPLETED"}, jobs
    assert len(re.findall(r"has been submitted with SLURM jobid \d+", output)) == len(planned)


def test_slurm_build_digest_equals_the_local_build(slurm_run, local_digest):
    workdir, _ = slurm_run
    assert build_digest(workdir) == local_digest


def test_failed_slurm_job_is_reported_with_its_slurm_log(tmp_path):
    not_a_zip = tmp_path / "d-bf268b89-1420-476b-b428-b85a913eb523.zip"
    not_a_zip.write_text("this is not a ZIP archive\n")
    workdir = make_workdir(
        tmp_path / "run", source="zip", zip={"path": str(not_a_zip)}, volumes=["mv01"]
    )
    result = run_snakemake_killable(
        workdir, *SLURM_ARGS, "--retries", "0", "all", timeout_s=RUN_BOUND_S, check=False
    )
    output = result.stdout + result.stderr
    _cancel(_run_id(output))
    assert result.returncode == 1, output[-4000:]
    failed = re.search(r"SLURM-job '(\d+)' failed, SLURM status is: 'FAILED'", output)
    assert failed, output[-4000:]
    # The rule's error block names the SLURM log of that job beside the rule's own log.
    logs = re.findall(
        r"^\s+log: logs/fetch/mv01\.log, (\S+/\.snakemake/slurm_logs/rule_fetch/mv01/(\d+)\.log)",
        output,
        re.M,
    )
    assert logs, output[-4000:]
    slurm_log, job_id = Path(logs[0][0]), logs[0][1]
    assert slurm_log.is_file() and slurm_log.is_relative_to(workdir)
    assert "Error in rule fetch" in slurm_log.read_text()
    assert "mv01: fetch: not a ZIP archive" in (workdir / "logs/fetch/mv01.log").read_text()
    jobs = {job["id"]: job for job in _sacct_jobs(_run_id(output))}
    assert jobs[job_id]["comment"] == "rule_fetch_wildcards_mv01"
    assert jobs[job_id]["state"] == "FAILED"
