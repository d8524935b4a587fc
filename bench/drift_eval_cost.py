"""The CPU of drift_eval's scoring on the test build of ``tests/test_drift_eval_protocol.py``
(70 synthetic volumes at 24 px, ks / mmd / c2st, the test's ``SMALL`` config, seed 1), and
of the volume-clustered intervals inside it.

    python bench/drift_eval_cost.py /tmp/cost build      # the bag, once
    /usr/bin/time -v python bench/drift_eval_cost.py /tmp/cost score
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from drift_eval_bag import DRIFT_EVAL_SMALL as SMALL  # noqa: E402  (the test's config)
from drift_eval_bag import make_bag  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("step", choices=["build", "score"])
    args = parser.parse_args()
    if args.step == "build":
        print(make_bag(args.root, count=70, size_xy=24, max_z=8))
        return 0
    from minivess_bundle.drift_eval import protocol

    inner, spent = protocol.clustered_interval, [0.0, 0]

    def timed(*a, **k):
        start = time.process_time()
        out = inner(*a, **k)
        spent[0] += time.process_time() - start
        spent[1] += 1
        return out

    protocol.clustered_interval = timed
    start = time.process_time()
    protocol.run_drift_eval(args.root / "bag", args.root / "out.json", config=SMALL, seed=1)
    total = time.process_time() - start
    print(
        f"run_drift_eval CPU {total:.2f} s; clustered intervals {spent[0]:.4f} s, {spent[1]} cells"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
