"""The quick start's console: a few lines with progress, ending with the digest line.

profiles/default selects the ``minivess`` logger plugin
(src/snakemake_logger_plugin_minivess); Snakemake's default console printed ~5 lines
per job and every input path of the aggregate rules.
"""

from __future__ import annotations

import logging
import re
import subprocess

import pytest
from workflow_utils import SNAKEMAKE_TIMEOUT_S, make_workdir, snakemake_command

DIGEST_LINE = re.compile(
    r"^minivess-bundle: results/bundle/minivess-0\.1\.0\.tar sha256 [0-9a-f]{64} "
    r"\(\d+ volumes, \d+ files, \d+ quarantined\)$"
)
TINY = {
    "synthetic": {"size_xy": 16, "max_z": 8},
    "volumes": ["mv01", "mv02", "mv39"],
    "drift": {"types": ["intensity"], "levels": [1]},
}


@pytest.mark.workflow
def test_tiny_build_prints_few_short_lines_with_progress_and_ends_with_the_digest(tmp_path):
    workdir = make_workdir(tmp_path, **TINY)
    command, env = snakemake_command(workdir, "--cores", "2", "all")
    result = subprocess.run(  # one stream, in the order a terminal shows it
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=SNAKEMAKE_TIMEOUT_S,
    )
    lines = result.stdout.rstrip("\n").splitlines()
    assert result.returncode == 0, result.stdout[-3000:]
    assert DIGEST_LINE.match(lines[-1]), lines[-5:]
    done = lines.index("jobs run:") - 1  # then the job table of every rule, the digest
    assert re.fullmatch(r"(\d+) of \1 jobs done \(100%\)", lines[done]), lines[done]
    progress = [line for line in lines if re.fullmatch(r"\d+ of \d+\+? jobs done.*", line)]
    assert len(progress) >= 5
    assert len(lines) <= 80, f"{len(lines)} lines"
    assert max(len(line) for line in lines) < 250
    assert not any(line.startswith(("rule ", "    input:", "localrule ")) for line in lines)


def _record(event: str | None, msg: str = "", level: int = logging.INFO, **extra):
    record = logging.LogRecord("snakemake", level, __file__, 1, msg, None, None)
    if event:
        record.event = event
    record.__dict__.update(extra)
    return record


class _Settings:
    printshellcmds = False
    nocolor = True
    quiet = None
    debug_dag = False
    verbose = False
    show_failed_logs = True
    stdout = False
    dryrun = False


def test_handler_prints_progress_every_5_percent_warnings_and_drops_job_chatter():
    pytest.importorskip("snakemake")
    from snakemake_logger_plugin_minivess import LogHandler

    handler = LogHandler(_Settings(), None)
    shown = [
        done for done in range(1, 201) if handler.keep(_record("progress", done=done, total=200))
    ]
    assert shown == list(range(10, 201, 10))  # one line per 5 % of 200 jobs, and the last
    assert not handler.keep(_record(None, "Select jobs to execute..."))
    assert not handler.keep(_record("job_started", "Execute 1 jobs..."))
    assert not handler.keep(_record("job_info", "rule all"))
    assert handler.keep(_record(None, "Nothing to be done (all requested files are present)"))
    assert handler.keep(_record(None, "disk almost full", level=logging.WARNING))
    assert handler.keep(_record("job_error", "Error in rule bundle", level=logging.ERROR))
    settings = _Settings()
    settings.dryrun = True  # a dry run shows Snakemake's full job list
    assert LogHandler(settings, None).keep(_record(None, "Select jobs to execute..."))
