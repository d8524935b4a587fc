"""The workflow on a real SLURM cluster through profiles/slurm (snakemake-executor-plugin-slurm).

Needs a cluster that answers `sinfo` and has accounting (`sacct`); CI starts a single-node one
with `bash .ci/slurm.sh up`. Elsewhere these tests are skipped; under CI they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, require, unavailable
from workflow_utils import build_digest, make_workdir, run_snakemake, run_snakemake_killable

from minivess_bundle.resources import GROUP_CORES, GROUP_PROCESS, submission_group

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]
TINY = {
    "synthetic": {"size_xy": 16, "max_z": 8},
    "volumes": ["mv01", "mv02", "mv39"],
    # three kinds: the drift volume's group holds three drift jobs that could run side by side
    # (kinds the plan never skips: the tiny drift volume is too sparse for topology and too
    # flat for intensity at level 1, which drift.plan.skip_reason leaves out)
    "drift": {"types": ["covariate", "noise", "stripes"], "levels": [1]},
}
# A SLURM run polls job states; 2 s between checks keeps the tiny run short (the plugin's
# default of 40 s suits real clusters and stays in the profile). The CI cluster's node has 2
# CPUs: --cores 2 bounds what one submission asks for (the profile's 8 suit real nodes).
NODE_CPUS = 2
SLURM_ARGS = (
    "--workflow-profile",
    str(REPO / "profiles" / "slurm"),
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--cores",
    str(NODE_CPUS),
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


def _sacct_jobs(run_id: str, extra: str = "") -> list[dict[str, str]]:
    """Every SLURM job named ``run_id`` (the plugin names all jobs of a run after it), with
    sacct field ``extra`` as "extra" when given."""
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
            "JobIDRaw,JobName,Comment,State" + (f",{extra}" if extra else ""),
        ],
        capture_output=True,
        text=True,
        timeout=PROBE_S,
        check=True,
    )
    keys = ("id", "name", "comment", "state", *(("extra",) if extra else ()))
    return [dict(zip(keys, line.split("|"), strict=True)) for line in result.stdout.splitlines()]


def _planned_jobs(output: str) -> list[tuple[str, str, str]]:
    """(group, rule, wildcard values joined by "_") of every non-local job a run printed:
    a ``rule NAME:`` (or ``checkpoint NAME:``) line followed by indented ``key: value``
    lines, at the top level (group "") or indented under ``Group job GROUP (...)``."""
    jobs, current, group = [], None, ""
    for line in output.splitlines():
        if match := re.search(r"\] Group job (\S+) \(jobs in lexicogr\. order\):$", line):
            group, current = match.group(1), None
        elif match := re.fullmatch(r"( {4})?(?:rule|checkpoint) (\w+):", line):
            if not match.group(1):
                group = ""
            current = [group, match.group(2), ""]
            jobs.append(current)
        elif current and re.match(r" {4,8}wildcards: ", line):
            pairs = line.strip().removeprefix("wildcards: ").split(", ")
            current[2] = "_".join(pair.split("=", 1)[1] for pair in pairs)
        elif re.fullmatch(r"local(?:rule|checkpoint) \w+:", line):
            current, group = None, ""
    return [tuple(job) for job in jobs]


def _comments(planned: list[tuple[str, str, str]]) -> list[str]:
    """The --comment the plugin gives each submission: rule_<rule>[_wildcards_<values>] for a
    job of its own, rule_<group>_<its rules, sorted, once each> for a group job."""
    comments = [
        f"rule_{rule}_wildcards_{wildcards}" if wildcards else f"rule_{rule}"
        for group, rule, wildcards in planned
        if not group
    ]
    groups: dict[str, set[str]] = {}
    for group, rule, _ in planned:
        if group:
            groups.setdefault(group, set()).add(rule)
    comments += [f"rule_{group}_{'_'.join(sorted(rules))}" for group, rules in groups.items()]
    return comments


def _cancel(run_id: str) -> None:
    subprocess.run(["scancel", "--name", run_id], capture_output=True, timeout=PROBE_S)


@pytest.fixture(scope="module")
def local_digest(tmp_path_factory) -> str:
    workdir = make_workdir(tmp_path_factory.mktemp("local"), **TINY)
    run_snakemake(workdir, "--cores", "2", "all")
    return build_digest(workdir)


def sbatch_recorder(folder: Path) -> tuple[Path, Path]:
    """A folder holding an ``sbatch`` that appends one line per call to a log, then runs the
    real one: put first on PATH, it counts what the plugin submits. (folder, log)"""
    real = shutil.which("sbatch")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "sbatch-calls.log"
    wrapper = folder / "sbatch"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return folder, log


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("slurm"), **TINY)
    folder, calls = sbatch_recorder(tmp_path_factory.mktemp("sbatch"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        result = run_snakemake_killable(
            workdir, *SLURM_ARGS, "all", timeout_s=RUN_BOUND_S, check=False
        )
    output = result.stdout + result.stderr
    run_id = re.search(r"^SLURM run ID: (\S+)$", output, re.M)
    if run_id:
        _cancel(run_id.group(1))  # nothing left behind if the run was killed
    assert result.returncode == 0, f"SLURM run failed ({result.returncode}):\n{output[-6000:]}"
    sbatch_calls = calls.read_text().splitlines() if calls.is_file() else []
    return workdir, output, sbatch_calls


#: Rules whose jobs go to SLURM: per volume in its group's submission (resample -> drift of
#: two volumes), the tail in one submission, report_mips alone beside the drift jobs.
GROUPED_RULES = {"resample", "drift"}
TAIL_GROUP_RULES = {"bundle", "verify_bundle", "report_figures"}
ALONE_RULES = {"report_mips"}
LOCAL_RULES = {
    "all",
    "fetch",
    "fetch_licence",
    "renamed_inventory",
    "validate",
    "validation_report",
    "drift_set",
    "drift_manifest",
}  # (drift_select and drift_set_gradual, local too, are not planned for this config)


def test_two_submissions_on_the_critical_path_and_sbatch_runs_once_each(slurm_run):
    """fetch (renaming) -> validate run on the submit host (localrules), resample -> drift of
    two volumes is one sbatch (resources.submission_group), bundle -> verify_bundle and
    report_figures one more (the tail group), report_mips its own: 3 volumes are 2 + 1 + 1
    = 4 submissions, counted at sbatch itself, where one job per rule would be 16 or more;
    a volume's path to the verified bundle waits in the queue twice (process, tail)."""
    workdir, output, sbatch_calls = slurm_run
    volumes = TINY["volumes"]
    valid = json.loads((workdir / "results" / "validation_report.json").read_text())["valid"]
    assert valid == volumes
    planned = _planned_jobs(output)
    grouped = {(group, rule, vol) for group, rule, vol in planned if group}
    process = {submission_group(GROUP_PROCESS, vol, volumes) for vol in valid}
    assert process == {"process_mv01-mv02", "process_mv39"}
    resample = {job for job in grouped if job[1] == "resample"}
    assert resample == {(submission_group(GROUP_PROCESS, v, volumes), "resample", v) for v in valid}
    drift = {job for job in grouped if job[1] == "drift"}
    assert drift and {group for group, _, _ in drift} <= process
    tail = {(group, rule) for group, rule, _ in grouped if rule in TAIL_GROUP_RULES}
    assert {rule for _, rule in tail} == TAIL_GROUP_RULES
    assert len({group for group, _ in tail}) == 1  # one submission
    assert {rule for _, rule, _ in grouped} == GROUPED_RULES | TAIL_GROUP_RULES
    assert {rule for group, rule, _ in planned if not group} == ALONE_RULES
    submissions = len(process) + 1 + len(ALONE_RULES)
    assert len(sbatch_calls) == submissions == 2 + 1 + 1
    # one job per rule would be 3 fetch + 3 validate + 3 resample + 3 drift + 4
    assert len(drift) == 3
    per_rule = 2 * len(volumes) + len(valid) + len(drift) + len(TAIL_GROUP_RULES | ALONE_RULES)
    assert per_rule == 16 and submissions <= per_rule / 4
    assert len(re.findall(r"has been submitted with SLURM jobid \d+", output)) == submissions
    # the tiny jobs, and everything before the validation checkpoint, run in the main process
    local = set(re.findall(r"^local(?:rule|checkpoint) (\w+):", output, re.M))
    assert local == LOCAL_RULES, local
    jobs = _sacct_jobs(_run_id(output))
    assert sorted(job["comment"] for job in jobs) == sorted(_comments(planned))
    assert {job["state"] for job in jobs} == {"COMPLETED"}, jobs


def test_no_submission_asks_for_more_cpus_than_the_cores_given(slurm_run):
    """A group's jobs that could run side by side are laid out within --cores (the profile's
    8 on real nodes, 2 on the CI node): the drift volume's group (resample, then 3 drift
    jobs) asks for 2 CPUs here, not 3; the tail (bundle 2 threads beside report_figures 1,
    then verify_bundle 2) for 2, not 3."""
    _, output, _ = slurm_run
    jobs = _sacct_jobs(_run_id(output), "AllocCPUS")
    cpus = {job["comment"]: int(job["extra"]) for job in jobs}
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["cores"] == GROUP_CORES == 8
    assert max(cpus.values()) == NODE_CPUS, cpus
    drift_group = next(c for c in cpus if c.startswith("rule_process_") and "drift" in c)
    assert cpus[drift_group] == NODE_CPUS
    tail = next(c for c in cpus if "bundle" in c)
    assert cpus[tail] == NODE_CPUS and "report_figures" in tail and "verify_bundle" in tail


def test_slurm_build_digest_equals_the_local_build(slurm_run, local_digest):
    workdir, _, _ = slurm_run
    assert build_digest(workdir) == local_digest


def test_failed_slurm_job_is_reported_with_its_slurm_log(tmp_path):
    """A job that fails on a node (resample past resample.max_output_voxels, in its
    process group's submission): the error block names the group's SLURM log, then the
    job with its own log, and sacct has the submission FAILED."""
    workdir = make_workdir(
        tmp_path / "run", **{**TINY, "volumes": ["mv01"]}, resample={"max_output_voxels": 1}
    )
    result = run_snakemake_killable(
        workdir, *SLURM_ARGS, "--retries", "0", "all", timeout_s=RUN_BOUND_S, check=False
    )
    output = result.stdout + result.stderr
    _cancel(_run_id(output))
    assert result.returncode == 1, output[-4000:]
    group = submission_group(GROUP_PROCESS, "mv01", ["mv01"])
    assert group == "process_mv01"
    block = re.search(
        rf"^\s+message: Error in group {group}\n\s+log: (\S+/\.snakemake/slurm_logs/"
        rf"group_{group}_((?:\w+_)*resample(?:_\w+)*)/(\d+)\.log) \(check log file",
        output,
        re.M,
    )
    assert block, output[-4000:]
    assert re.search(
        r"^\s+rule resample:\n(?:\s+\w+: .*\n)*?\s+log: logs/resample/mv01\.log", output, re.M
    )
    slurm_log, rules, job_id = Path(block.group(1)), block.group(2), block.group(3)
    assert slurm_log.is_file() and slurm_log.is_relative_to(workdir)
    assert "Error in rule resample" in slurm_log.read_text()
    log = (workdir / "logs/resample/mv01.log").read_text()
    assert "at most 1 voxels (resample.max_output_voxels)" in log, log
    jobs = {job["id"]: job for job in _sacct_jobs(_run_id(output))}
    assert jobs[job_id]["comment"] == f"rule_{group}_{rules}"
    assert jobs[job_id]["state"] == "FAILED"
