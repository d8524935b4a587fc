"""bench/random_kills.py: the kill moments are drawn from the printed seed and replay exactly
(the harness itself, K >= 10, is a bench: see bench/RESULTS.md)."""

from __future__ import annotations

import importlib.util

from conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location(
        "random_kills", REPO / "bench" / "random_kills.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_seed_and_index_replay_the_same_kill_moment():
    bench = _bench()
    moments = [bench.draw(725849, i, 19) for i in range(10)]
    assert moments == [bench.draw(725849, i, 19) for i in range(10)]  # --only I replays run I
    assert moments[0] == {"after_steps": 13, "delay_ms": 426}  # as recorded in bench/RESULTS.md
    assert moments[4] == {"after_steps": 0, "delay_ms": 256}
    assert all(0 <= m["after_steps"] < 19 and 0 <= m["delay_ms"] < 1500 for m in moments)
    assert len({tuple(m.values()) for m in moments}) == 10  # the runs differ
    assert bench.draw(1, 0, 19) != bench.draw(2, 0, 19)


def test_steps_done_reads_snakemakes_last_progress_line(tmp_path):
    bench = _bench()
    log = tmp_path / "run.log"
    assert bench.steps_done(log) == 0  # not started yet
    log.write_text("Building DAG\n1 of 19 steps (5%) done\nrule x:\n12 of 19 steps (63%) done\n")
    assert bench.steps_done(log) == 12
    log.write_text("Job stats:\n3 of 15+ jobs done, still planning (x)\n27 of 30 jobs done (90%)\n")
    assert bench.steps_done(log) == 27
