"""A quiet console for the quick start: ``--logger minivess`` (profiles/default sets it).

Snakemake's default console prints ~5 lines per job plus every input path of the
aggregate rules (9,583 lines, some over 50,000 characters, for the 70-volume quick start).
This handler drops the per-job narration (job blocks, shell commands, "Select jobs
to execute", "Finished jobid", the log paths) and prints the job table, a progress line
every 5 % (and the last one), every warning and error in Snakemake's own format (failed
jobs with their logs) and any other message (e.g. ``--lint``'s), so the run's last
line is the workflow's own ``onsuccess`` digest line.

Snakemake's job total grows when a checkpoint has run (validation decides which volumes
are resampled and drifted): until the last checkpoint of the table has run, progress
says it is still planning (``12 of 219+ jobs done, still planning``) instead of a
percentage that would fall; then it gives the final count, and the end of the run
lists every rule's jobs (the first table cannot: resample and drift are not planned
yet). ``--cores`` above this machine's CPUs gets a warning.
Dry runs, ``--verbose`` and ``--debug-dag`` get Snakemake's full output.

Snakemake finds logger plugins by module name (``snakemake_logger_plugin_<name>``); this
one ships inside the minivess-bundle distribution (``src/``), so it needs no extra.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

#: Progress is printed when it crosses a multiple of 1/PROGRESS_STEPS of the jobs (5 %).
PROGRESS_STEPS = 20
#: Events that only narrate the scheduling of single jobs (the bulk of the default output).
DROP_EVENTS = frozenset(
    {
        "job_info",
        "job_started",
        "job_finished",
        "shellcmd",
        "resources_info",
        "group_info",
        "workflow_started",
        "rulegraph",
    }
)
#: Plain info messages of the same kind (start-up and scheduling chatter, the log paths).
DROP_MESSAGES = (
    "Select jobs to execute",
    "Removing temporary output",  # staging is temp(): one line per staged file
    "Execute ",
    "Using shell:",
    "Provided cores:",
    "Provided resources:",
    "Rules claiming more threads",
    "Conda environments:",
    "Singularity containers:",
    "Assuming unrestricted shared filesystem",
    "DAG of jobs will be updated",
    "Updating checkpoint dependencies",
    "Complete log(s):",
    "Elapsed time:",
)


#: The workflow's checkpoint rules (``checkpoint NAME:`` in workflow/rules/; a test holds
#: them equal): until each has run, more jobs may be planned. (``bundle`` is a plain rule:
#: verify_bundle reads its declared manifests, so the count is final after validation.)
CHECKPOINT_RULES = frozenset({"validation_report"})


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity; the machine's count elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cores_warning(cores: int, cpus: int) -> str:
    """The warning for ``--cores`` above the CPUs, or "" when it fits."""
    if cores <= cpus:
        return ""
    return (
        f"minivess-bundle: --cores {cores} is more than the {cpus} CPUs here: jobs share "
        f"them and the build is no faster (use --cores {cpus})"
    )


def progress_line(done: int, total: int, planning: bool) -> str:
    """One progress line: a percentage only once the job count is final."""
    if planning:
        return f"{done} of {total}+ jobs done, still planning (checkpoints add jobs)"
    return f"{done} of {total} jobs done ({100 * done // max(total, 1)}%)"


def job_table(counts: Counter) -> str:
    """Every rule that ran and its jobs, most first (then by name), with the total."""
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    width = max([len("total"), *(len(rule) for rule, _ in rows)])
    lines = [f"{'job':<{width}}  count", *(f"{rule:<{width}}  {n:>5}" for rule, n in rows)]
    lines.append(f"{'total':<{width}}  {sum(counts.values()):>5}")
    return "jobs run:\n" + "\n".join(lines)


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    """No settings: the handler follows Snakemake's own output settings."""


class LogHandler(LogHandlerBase):
    """Job table, progress every 5 %, warnings and errors; everything else is dropped."""

    def __post_init__(self) -> None:
        from snakemake.logging import DefaultFilter, DefaultFormatter

        self.stream = sys.stderr
        cs = self.common_settings
        self.full = bool(cs.dryrun or cs.verbose or cs.debug_dag)
        self.formatter = DefaultFormatter(cs.quiet, cs.show_failed_logs)
        self.default_filter = DefaultFilter(
            cs.quiet, cs.debug_dag, cs.verbose, cs.dryrun, cs.printshellcmds
        )
        self.last_step = 0
        #: checkpoint jobs in the job table (None: no table yet), and those that ran
        self.checkpoints_planned: int | None = None
        self.checkpoint_jobs: set = set()
        self.checkpoints_done = 0
        #: checkpoints that finished before Snakemake updated the DAG after them: the
        #: progress record right after such a finish still counts the old DAG's jobs
        self.checkpoints_updating = 0
        self._total_at_finish: int | None = None
        self._progress_since_finish = 0
        self._last_total: int | None = None
        self.rules_run: Counter = Counter()

    def planning(self) -> bool:
        """Whether a checkpoint of the job table has not run yet (the total may grow)."""
        return self.checkpoints_planned is None or (
            self.checkpoints_done < self.checkpoints_planned
        )

    def observe(self, record: logging.LogRecord) -> str | None:
        """Track what the job count depends on; the text to print instead of the
        record's own (None: Snakemake's format)."""
        event = str(getattr(record, "event", "") or "")
        if event == "run_info" and isinstance(getattr(record, "stats", None), dict):
            stats = record.stats
            self.checkpoints_planned = sum(
                int(n) for rule, n in stats.items() if rule in CHECKPOINT_RULES
            )
        elif event == "job_info":
            self.rules_run[str(getattr(record, "rule_name", "?"))] += 1
            if getattr(record, "is_checkpoint", False):
                self.checkpoint_jobs.add(getattr(record, "jobid", None))
        elif event == "job_finished":
            if getattr(record, "job_id", None) in self.checkpoint_jobs:
                self.checkpoint_jobs.discard(record.job_id)
                self.checkpoints_updating += 1
                self._total_at_finish, self._progress_since_finish = self._last_total, 0
        elif event == "resources_info" and getattr(record, "cores", None):
            return cores_warning(int(record.cores), available_cpus()) or None
        elif event == "progress" and not self.full:
            done, total = int(record.done), int(record.total)
            if self.checkpoints_updating:  # the DAG is updated once the total moves, or after
                self._progress_since_finish += 1  # the stale record that follows the finish
                moved = self._total_at_finish is not None and total != self._total_at_finish
                if moved or self._progress_since_finish > 1:
                    self.checkpoints_done += self.checkpoints_updating
                    self.checkpoints_updating = 0
            self._last_total = total
            line = progress_line(done, total, self.planning())
            if done == total and self.rules_run:
                line += "\n" + job_table(self.rules_run)
            return line
        return None

    def keep(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` gets a line (after Snakemake's own filter)."""
        if not self.default_filter.filter(record):
            return False
        if self.full or record.levelno >= logging.WARNING:
            return True
        event = str(getattr(record, "event", "") or "")
        if event == "run_info":
            return True
        if event == "progress":
            done, total = int(record.done), max(int(record.total), 1)
            step = done * PROGRESS_STEPS // total
            if step == self.last_step and done != total:
                return False
            self.last_step = step
            return True
        if event in DROP_EVENTS:
            return False
        return not str(record.msg).startswith(DROP_MESSAGES)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            instead = self.observe(record)
            if str(getattr(record, "event", "")) == "resources_info" and instead:
                self.stream.write(instead + "\n")  # the cores warning
                self.stream.flush()
                return
            if self.keep(record):
                text = instead or self.format(record)
                if text:
                    self.stream.write(text.rstrip("\n") + "\n")
                    self.stream.flush()
        except Exception:  # a logging failure must not stop the workflow
            self.handleError(record)

    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return True

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False
