"""A newcomer's first hour, as printed: progress that never falls, every rule in the job
table, a word on too many --cores, no coroutine warnings, and a plain rerun after Ctrl-C.

Real ``snakemake`` runs of the tiny synthetic config (the config messages are in
test_config_messages.py); the handler's pieces are unit-tested first.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections import Counter

import pytest
from conftest import REPO
from workflow_utils import (
    SNAKEMAKE_TIMEOUT_S,
    make_workdir,
    run_snakemake,
    snakemake_command,
    start_snakemake,
    wait_for,
)

from snakemake_logger_plugin_minivess import (
    CHECKPOINT_RULES,
    available_cpus,
    cores_warning,
    job_table,
    progress_line,
)

TINY = {
    "synthetic": {"size_xy": 16, "max_z": 8},
    "volumes": ["mv01", "mv05"],
    "drift": {"types": ["intensity", "prevalence"], "levels": [1]},
    "bundle": {"archive": False},
}
PROGRESS = re.compile(r"^(\d+) of (\d+)(\+?) jobs done(?:, still planning .*| \((\d+)%\))$")


def test_the_handler_knows_every_checkpoint_of_the_workflow():
    declared = {
        name
        for smk in (REPO / "workflow" / "rules").glob("*.smk")
        for name in re.findall(r"^checkpoint (\w+):", smk.read_text(), re.M)
    }
    assert declared == CHECKPOINT_RULES


def test_progress_has_a_percentage_only_once_the_count_is_final():
    assert progress_line(12, 219, planning=True) == (
        "12 of 219+ jobs done, still planning (checkpoints add jobs)"
    )
    assert progress_line(219, 459, planning=False) == "219 of 459 jobs done (47%)"
    assert progress_line(459, 459, planning=False) == "459 of 459 jobs done (100%)"


def test_cores_warning_starts_one_above_the_cpus():
    assert cores_warning(2, 2) == ""
    assert cores_warning(3, 2) == (
        "minivess-bundle: --cores 3 is more than the 2 CPUs here: jobs share them and the "
        "build is no faster (use --cores 2)"
    )


def test_the_job_table_lists_rules_most_jobs_first_with_the_total():
    assert job_table(Counter({"fetch": 2, "all": 1, "bundle": 1})).splitlines() == [
        "jobs run:",
        "job     count",
        "fetch       2",
        "all         1",
        "bundle      1",
        "total       4",
    ]


def test_the_handler_is_planning_until_every_checkpoint_of_the_table_ran():
    pytest.importorskip("snakemake")
    from test_console import _record, _Settings

    from snakemake_logger_plugin_minivess import LogHandler

    handler = LogHandler(_Settings(), None)
    assert handler.planning()  # no table yet
    handler.observe(_record("run_info", stats={"fetch": 2, "validation_report": 1, "bundle": 1}))
    handler.observe(_record("job_info", rule_name="bundle", jobid=2, is_checkpoint=False))
    handler.observe(_record("job_info", rule_name="validation_report", jobid=1, is_checkpoint=True))
    assert handler.observe(_record("progress", done=1, total=4)).startswith("1 of 4+ jobs done")
    handler.observe(_record("job_finished", job_id=1))
    # the record right after a checkpoint's finish still counts the old DAG's jobs
    assert handler.observe(_record("progress", done=2, total=4)).startswith("2 of 4+ jobs done")
    assert handler.planning()
    handler.observe(_record("job_finished", job_id=2))  # a plain rule changes nothing
    assert handler.observe(_record("progress", done=3, total=6)) == "3 of 6 jobs done (50%)"
    assert not handler.planning()
    # a checkpoint that adds no job: the second record after it is final
    other = LogHandler(_Settings(), None)
    other.observe(_record("run_info", stats={"validation_report": 1}))
    other.observe(_record("job_info", rule_name="validation_report", jobid=1, is_checkpoint=True))
    other.observe(_record("job_finished", job_id=1))
    assert other.observe(_record("progress", done=1, total=3)).startswith("1 of 3+ jobs done")
    assert other.observe(_record("progress", done=2, total=3)) == "2 of 3 jobs done (66%)"
    assert not other.planning()


@pytest.mark.workflow
def test_a_run_says_what_it_plans_lists_every_rule_and_warns_about_cores(tmp_path):
    workdir = make_workdir(tmp_path, **TINY)
    cores = available_cpus() + 1
    command, env = snakemake_command(workdir, "--cores", str(cores), "all")
    result = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=SNAKEMAKE_TIMEOUT_S,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout[-3000:]
    assert cores_warning(cores, available_cpus()) in lines
    progress = [PROGRESS.match(line) for line in lines if PROGRESS.match(line)]
    assert progress[0].group(3) == "+"  # the validation checkpoint has not run yet
    final = [m for m in progress if not m.group(3)]
    assert final and final[-1].group(1) == final[-1].group(2)
    assert len({m.group(2) for m in final}) == 1  # once final, the count never changes
    percentages = [int(m.group(4)) for m in final]
    assert percentages == sorted(percentages) and percentages[-1] == 100
    table = lines[lines.index("jobs run:") + 1 : -1]
    rules = {line.split()[0] for line in table[1:-1]}
    assert {"resample", "drift", "drift_set", "validate", "bundle", "verify_bundle"} <= rules
    assert table[-1].split() == ["total", final[-1].group(2)]
    assert "was never awaited" not in result.stdout
    report = run_snakemake(workdir, "--cores", "1", "--report", str(tmp_path / "report.zip"))
    assert (tmp_path / "report.zip").stat().st_size > 10_000
    assert "was never awaited" not in report.stdout + report.stderr


@pytest.mark.workflow
def test_after_ctrl_c_a_plain_rerun_finishes_the_build(tmp_path):
    """A terminal's Ctrl-C (SIGINT to the process group) mid-run; the next plain run
    (profiles/default: rerun-incomplete) redoes what was running and verifies the bag."""
    workdir = make_workdir(tmp_path, **TINY)
    run = start_snakemake(workdir, "--cores", "2", "all")
    landed = workdir / "results" / "renamed" / "imagesTr"
    wait_for(lambda: landed.is_dir() and any(landed.glob("mv*.nii.gz")), run)
    os.killpg(run.pid, signal.SIGINT)
    run.communicate(timeout=SNAKEMAKE_TIMEOUT_S)
    assert run.returncode != 0
    assert not (workdir / "results" / "bundle" / "minivess-0.1.0.verified.txt").exists()
    rerun = run_snakemake(workdir, "--cores", "2", "all", check=False)
    said = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, said[-3000:]
    assert "IncompleteFilesException" not in said
    assert re.search(r"^minivess-bundle: results/bundle/minivess-0\.1\.0 ", said, re.M)
    verified = (workdir / "results" / "bundle" / "minivess-0.1.0.verified.txt").read_text()
    assert verified.startswith("OK minivess-0.1.0: bag minivess-0.1.0, "), verified[:500]
