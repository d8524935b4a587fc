"""Volume roles of the drift benchmark: training, reference, calibration and test.

A detector is judged on volumes it has never seen, and so is the null that calibrates it.
The valid volumes of a build are split, at the level of volumes, into four disjoint roles:

- **training**: the reference segmenter's training list (:func:`training_volumes`). The
  SAME for every replication of a run, and never a reference, calibration or test volume
  of any replication, so the model trains once and harm is always measured on volumes it
  never saw. It is the dataset authors' validation fold ``seed % 3`` (:mod:`..splits`,
  ``AUTHORS_3FOLD_VAL``) restricted to the volumes present, i.e. about a third of the
  volumes (a build holding none of that fold's ids trains on a seeded third instead).
- **reference**: the clean data a detector is fitted on;
- **calibration**: clean volumes the null of each statistic is drawn from, and nothing else;
- **test**: new volumes: clean, they measure false alarms; drifted, power.

The evaluation pool (every volume but the training list) is shuffled with a seed derived
from (seed, ``"drift_eval/roles"``, shuffle) and cut into ``folds`` near-equal folds;
replication ``r`` is shuffle ``r // folds``, fold ``f = r % folds``: test = fold ``f``,
calibration = the next ``calibration_folds`` folds (mod ``folds``), reference = the other
folds. Over ``folds`` replications every pool volume is a test volume once.

**How the counts trade off.** With all 70 volumes, training takes the authors' fold (23 or
24 volumes, ample for a 3-D UNet on MiniVess) and the pool holds 46-49; with the default
``folds = 5`` and ``calibration_folds = 3`` each replication has 9-10 test, 27-30
calibration and 9-10 reference volumes. The calibration count matters most: the null is
one statistic per calibration volume (:mod:`.null`), and a clean new volume is
flagged only when its statistic exceeds every one of them but ``floor(alpha (V + 1)) - 1``,
so the exact false-alarm rate is ``floor(alpha (V + 1)) / (V + 1)`` and a test can reject
at all only with ``V >= 1/alpha - 1`` (19 at ``alpha = 0.05``; two calibration folds hold
18-20, too few on some folds). More reference volumes make a detector's reference
richer; more test volumes narrow the FPR and power intervals of one replication. A tiny
build (e.g. 8 volumes: 2-3 training, 5-6 pool) gets ``min(folds, pool)`` folds of one or
two volumes: every role still holds a volume, but its figures say little (and no test
can reject). Fewer than 3 pool volumes is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..core.splits import AUTHORS_3FOLD_VAL, N_FOLDS
from .sets import DriftEvalError, derive_seed

#: default number of folds the evaluation pool is cut into (replications per shuffle)
FOLDS = 5
#: default number of folds the calibration role takes in each replication
CALIBRATION_FOLDS = 3
#: the smallest evaluation pool: one reference, one calibration and one test volume
MIN_POOL = 3
ROLE_NAMES = ("training", "reference", "calibration", "test")


@dataclass(frozen=True)
class Roles:
    """The volume ids of each role of one replication; pairwise disjoint, each sorted."""

    training: tuple[str, ...]
    reference: tuple[str, ...]
    calibration: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in ROLE_NAMES:
            for vol in getattr(self, name):
                if vol in seen:
                    raise DriftEvalError(
                        f"roles: {vol} is both {seen[vol]} and {name}",
                        volume=vol,
                        expected="pairwise disjoint roles",
                    )
                seen[vol] = name

    def as_dict(self) -> dict[str, list[str]]:
        """``{role: [volume, ...]}`` for ``drift_eval.json``."""
        return {name: list(getattr(self, name)) for name in ROLE_NAMES}


def _sorted_unique(volumes: Iterable[str]) -> list[str]:
    vols = sorted(set(volumes))
    if not vols:
        raise DriftEvalError("roles: no volumes", expected="the valid volumes of the build")
    return vols


def training_volumes(volumes: Iterable[str], seed: int) -> tuple[str, ...]:
    """The reference segmenter's training volumes: the authors' validation fold ``seed % 3``.

    The same for every replication of a run (it depends on ``volumes`` and ``seed`` only),
    and disjoint from every role :func:`assign_roles` gives for the same arguments.
    """
    import numpy as np

    vols = _sorted_unique(volumes)
    fold = set(AUTHORS_3FOLD_VAL[int(seed) % N_FOLDS])
    chosen = [v for v in vols if v in fold]
    if not chosen:  # none of the authors' ids: a seeded third (at least one volume)
        rng = np.random.default_rng(derive_seed(seed, "drift_eval/training"))
        count = max(1, round(len(vols) / N_FOLDS))
        chosen = [vols[i] for i in rng.choice(len(vols), size=count, replace=False)]
    return tuple(sorted(chosen))


def assign_roles(
    volumes: Iterable[str],
    seed: int,
    replication: int = 0,
    *,
    folds: int = FOLDS,
    calibration_folds: int = CALIBRATION_FOLDS,
    training: Sequence[str] | None = None,
) -> Roles:
    """The roles of replication ``replication`` (0, 1, ...) of a run with ``seed``.

    Deterministic from (``volumes``, ``seed``, ``replication``, ``folds``). ``training``
    overrides :func:`training_volumes` (e.g. the list a cached model was trained on); it
    must be a subset of ``volumes``. See the module docstring for the rotation and counts.
    """
    import numpy as np

    vols = _sorted_unique(volumes)
    if isinstance(replication, bool) or not isinstance(replication, int) or replication < 0:
        raise DriftEvalError(f"roles: replication {replication!r}", expected="an integer >= 0")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < MIN_POOL:
        raise DriftEvalError(f"roles: folds {folds!r}", expected=f"an integer >= {MIN_POOL}")
    if (
        isinstance(calibration_folds, bool)
        or not isinstance(calibration_folds, int)
        or not 1 <= calibration_folds <= folds - 2
    ):
        raise DriftEvalError(
            f"roles: calibration_folds {calibration_folds!r} of {folds} folds",
            expected=f"an integer 1..{folds - 2} (a test fold and a reference fold remain)",
        )
    train = tuple(sorted(training)) if training is not None else training_volumes(vols, seed)
    stray = sorted(set(train) - set(vols))
    if stray:
        raise DriftEvalError(
            f"roles: training volumes {stray} are not among the volumes",
            expected="a training list drawn from the build's volumes",
        )
    pool = [v for v in vols if v not in set(train)]
    if len(pool) < MIN_POOL:
        raise DriftEvalError(
            f"roles: {len(pool)} volumes besides the {len(train)} training volumes ({pool})",
            expected=f"at least {MIN_POOL} (one reference, one calibration, one test volume)",
        )
    k = min(folds, len(pool))
    c = max(1, min(calibration_folds, k - 2))
    shuffle, fold = divmod(replication, k)
    rng = np.random.default_rng(derive_seed(seed, "drift_eval/roles", shuffle))
    order = [pool[i] for i in rng.permutation(len(pool))]
    cuts = [order[i::k] for i in range(k)]
    test = cuts[fold]
    calibrating = {(fold + 1 + j) % k for j in range(c)}
    calibration = [v for i in sorted(calibrating) for v in cuts[i]]
    reference = [v for i, cut in enumerate(cuts) if i != fold and i not in calibrating for v in cut]
    return Roles(
        training=tuple(train),
        reference=tuple(sorted(reference)),
        calibration=tuple(sorted(calibration)),
        test=tuple(sorted(test)),
    )
