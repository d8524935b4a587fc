"""The dataset authors' 3-fold cross-validation split, for nnU-Net and MONAI alike.

Source: minivess-mlops ``configs/splits/3fold_seed42.json`` (the MiniVess authors'
training repository; seed 42): the validation ids of each fold, every fold training
on the other volumes. There is no held-out test set. The authors' DynUNet baseline
on these folds reports DSC ~0.90 and clDice ~0.82 (Dice-CE loss).

:func:`folds` restricts the split to the volumes a build actually holds (a
quarantined volume or a subset leaves ids out); fold numbers stay the authors'.
An id the split does not name (outside mv01..mv70) is trained on in every fold
and validated in none. The list :func:`folds` returns is also the shape of nnU-Net
v2's ``splits_final.json`` (``nnUNet_preprocessed/DatasetNNN_<name>/splits_final.json``,
read by ``nnUNetTrainer.do_split``).
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ConsumerError

#: Where the split comes from (cited in exports).
SOURCE = "minivess-mlops configs/splits/3fold_seed42.json (the dataset authors' 3-fold split)"

#: Validation ids of each fold, as the authors published them.
# fmt: off
AUTHORS_3FOLD_VAL: tuple[tuple[str, ...], ...] = (
    ("mv02", "mv05", "mv11", "mv14", "mv15", "mv16", "mv20", "mv26", "mv27", "mv31", "mv32",
     "mv38", "mv40", "mv43", "mv45", "mv46", "mv50", "mv54", "mv55", "mv58", "mv61", "mv62",
     "mv69", "mv70"),
    ("mv01", "mv03", "mv06", "mv08", "mv13", "mv18", "mv19", "mv21", "mv22", "mv24", "mv30", "mv36",
     "mv37", "mv39", "mv47", "mv48", "mv49", "mv51", "mv53", "mv60", "mv64", "mv66", "mv67"),
    ("mv04", "mv07", "mv09", "mv10", "mv12", "mv17", "mv23", "mv25", "mv28", "mv29", "mv33", "mv34",
     "mv35", "mv41", "mv42", "mv44", "mv52", "mv56", "mv57", "mv59", "mv63", "mv65", "mv68"),
)
# fmt: on
N_FOLDS = len(AUTHORS_3FOLD_VAL)


def folds(ids: Iterable[str]) -> list[dict[str, list[str]]]:
    """``[{"train": [...], "val": [...]}, ...]`` per fold, over the given ``ids`` only (sorted)."""
    present = sorted(set(ids))
    out = []
    for val_ids in AUTHORS_3FOLD_VAL:
        val = set(val_ids)
        out.append(
            {
                "train": [v for v in present if v not in val],
                "val": [v for v in present if v in val],
            }
        )
    return out


def fold(ids: Iterable[str], k: int) -> dict[str, list[str]]:
    """Fold ``k`` (0, 1 or 2) of :func:`folds`; any other ``k`` raises :class:`ConsumerError`."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < N_FOLDS:
        raise ConsumerError(f"fold {k!r}", expected=f"an integer 0..{N_FOLDS - 1}")
    return folds(ids)[k]
