"""A quiet console for the quick start: ``--logger minivess`` (profiles/default sets it).

Snakemake's default console prints ~5 lines per job plus every input path of the
aggregate rules (9,583 lines, some over 50,000 characters, for the 70-volume quick start).
This handler drops the per-job narration (job blocks, shell commands, "Select jobs
to execute", "Finished jobid", the log paths) and prints the job table, a progress line
every 5 % (and the last one), every warning and error in Snakemake's own format (failed
jobs with their logs) and any other message (e.g. ``--lint``'s), so the run's last
line is the workflow's own ``onsuccess`` digest line.
Dry runs, ``--verbose`` and ``--debug-dag`` get Snakemake's full output.

Snakemake finds logger plugins by module name (``snakemake_logger_plugin_<name>``); this
one ships inside the minivess-bundle distribution (``src/``), so it needs no extra.
"""

from __future__ import annotations

import logging
import sys
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
            if self.keep(record):
                text = self.format(record)
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
