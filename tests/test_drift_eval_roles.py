"""Volume roles of the drift benchmark: disjoint, deterministic, rotating, and the model's
training list fixed across replications (pure Python, milliseconds)."""

from __future__ import annotations

import pytest

from minivess_bundle.core.splits import AUTHORS_3FOLD_VAL
from minivess_bundle.drift_eval.roles import (
    FOLDS,
    ROLE_NAMES,
    Roles,
    assign_roles,
    training_volumes,
)
from minivess_bundle.drift_eval.sets import DriftEvalError

ALL = [f"mv{i:02d}" for i in range(1, 71)]


@pytest.mark.parametrize("seed", [0, 1, 2, 20230301])
def test_training_list_is_one_authors_fold_and_never_any_role_of_any_replication(seed):
    train = training_volumes(ALL, seed)
    assert train == tuple(sorted(AUTHORS_3FOLD_VAL[seed % 3]))
    for r in range(3 * FOLDS):
        roles = assign_roles(ALL, seed, r)
        assert roles.training == train
        others = set(roles.reference) | set(roles.calibration) | set(roles.test)
        assert not others & set(train)
        assert others | set(train) == set(ALL)


def test_roles_are_pairwise_disjoint_and_each_volume_is_tested_once_per_rotation():
    tested, calibrated = [], []
    for r in range(FOLDS):
        roles = assign_roles(ALL, 20230301, r)
        sizes = [len(getattr(roles, n)) for n in ROLE_NAMES]
        assert sum(sizes) == 70
        assert len(set().union(*(getattr(roles, n) for n in ROLE_NAMES))) == 70
        # the default: 1 test fold, 3 calibration folds (at least 19 volumes: the exact
        # null's smallest p 1/(V + 1) <= 0.05), 1 reference fold, of 9-10 volumes each
        assert 9 <= len(roles.test) <= 10 and 27 <= len(roles.calibration) <= 30
        assert 9 <= len(roles.reference) <= 10
        tested += roles.test
        calibrated += roles.calibration
    pool = sorted(set(ALL) - set(training_volumes(ALL, 20230301)))
    assert sorted(tested) == pool and sorted(calibrated) == sorted(pool * 3)


def test_roles_depend_on_seed_and_replication_only_and_reshuffle_after_a_rotation():
    a = assign_roles(ALL, 7, 3)
    assert a == assign_roles(list(reversed(ALL)), 7, 3)
    assert a != assign_roles(ALL, 8, 3)
    assert assign_roles(ALL, 7, 0).test != assign_roles(ALL, 7, FOLDS).test


def test_a_tiny_build_still_gets_a_volume_in_every_role_and_too_few_is_one_error():
    tiny = [f"mv{i:02d}" for i in range(1, 9)]
    roles = assign_roles(tiny, 0, 0)
    assert roles.training == ("mv02", "mv05")
    assert all(getattr(roles, n) for n in ROLE_NAMES)
    # 3 pool volumes: the smallest that works; 2: an error naming the count
    three = assign_roles(["mv01", "mv02", "mv03", "mv04", "mv05"], 0, 2)
    assert (len(three.reference), len(three.calibration), len(three.test)) == (1, 1, 1)
    with pytest.raises(DriftEvalError, match="2 volumes besides the 2 training volumes"):
        assign_roles(["mv01", "mv02", "mv03", "mv05"], 0, 0)


def test_ids_outside_the_authors_split_train_on_a_seeded_third():
    ids = [f"sv{i:02d}" for i in range(12)]
    train = training_volumes(ids, 3)
    assert len(train) == 4 and train == training_volumes(ids, 3)


def test_overlapping_roles_and_bad_arguments_are_refused():
    with pytest.raises(DriftEvalError, match="mv01 is both training and test"):
        Roles(("mv01",), ("mv02",), ("mv03",), ("mv01",))
    with pytest.raises(DriftEvalError, match="replication -1"):
        assign_roles(ALL, 0, -1)
    with pytest.raises(DriftEvalError, match="folds 2"):
        assign_roles(ALL, 0, 0, folds=2)
    # calibration_folds at its boundaries: 1 .. folds - 2
    assert len(assign_roles(ALL, 0, 0, folds=5, calibration_folds=3).reference) in (9, 10)
    with pytest.raises(DriftEvalError, match="calibration_folds 4 of 5 folds"):
        assign_roles(ALL, 0, 0, folds=5, calibration_folds=4)
    with pytest.raises(DriftEvalError, match="calibration_folds 0"):
        assign_roles(ALL, 0, 0, calibration_folds=0)
    with pytest.raises(DriftEvalError, match=r"training volumes \['zz'\]"):
        assign_roles(ALL, 0, 0, training=["zz"])
