"""The classical reference segmenter: multi-scale vesselness and one threshold fixed on clean data.

A second opinion beside the UNet (:mod:`.reference`), with no learnt weights to doubt:

1. the volume is scaled to its own (1st, 99.9th) percentile window, as the UNet sees it
   (:func:`.harm.volume_scale`, :func:`.harm.normalise`);
2. Sato's multi-scale Hessian tubeness for bright tubes (:func:`skimage.filters.sato`,
   ``black_ridges=False``, scales :data:`SIGMAS` voxels): the largest over scales of the
   scale-normalised eigenvalue response of a bright line;
3. a voxel is vessel when its response is above one threshold, the one that maximises the
   pooled Dice over the clean training volumes (:func:`fit_threshold`; candidates are
   :data:`CANDIDATES` quantiles of the training responses).

The threshold is fitted once, on clean training volumes only, and then never changes: a
drift that moves the response (a dimmer, blurred or noisier vessel) moves the prediction.
scikit-image is part of the default install.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .harm import central_crop, normalise, volume_scale

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: Hessian scales in voxels (processed volumes are ~1 um; vessel radii are ~1.5-6 um)
SIGMAS = (1.0, 2.0, 3.0)
#: threshold candidates: this many quantiles of the pooled training responses
CANDIDATES = 60


def tubeness(image: np.ndarray, scale: tuple[float, float], sigmas: Sequence[float]) -> np.ndarray:
    """Sato's bright-tube response of ``image`` scaled to ``scale`` (float32, same shape)."""
    import numpy as np
    from skimage.filters import sato

    scaled = normalise(image, scale)
    pad = [(0, max(0, 3 - s)) for s in scaled.shape]  # the Hessian needs >= 3 voxels an axis
    padded = np.pad(scaled, pad, mode="edge")
    response = sato(padded, sigmas=tuple(float(s) for s in sigmas), black_ridges=False)
    return response[tuple(slice(0, s) for s in scaled.shape)].astype(np.float32)


@dataclass(frozen=True)
class VesselnessSegmenter:
    """Tubeness above ``threshold`` (see the module docstring); ``segment`` as the UNet's."""

    threshold: float
    sigmas: tuple[float, ...] = SIGMAS
    name: str = "vesselness"

    def segment(self, image: np.ndarray, window: tuple[slice, ...]) -> np.ndarray:
        """The mask of ``image[window]`` (uint8), scaled by the whole volume's window."""
        import numpy as np

        response = tubeness(np.asarray(image)[window], volume_scale(image), self.sigmas)
        return (response > self.threshold).astype(np.uint8)

    def record(self) -> dict[str, Any]:
        return {
            "method": "skimage.filters.sato (bright tubes) on the percentile-scaled volume, "
            "one threshold",
            "sigmas_voxels": [float(s) for s in self.sigmas],
            "threshold": float(self.threshold),
        }


def fit_threshold(
    volumes: Sequence[tuple[np.ndarray, np.ndarray]],
    crop: Sequence[int],
    sigmas: Sequence[float] = SIGMAS,
    candidates: int = CANDIDATES,
) -> tuple[VesselnessSegmenter, dict[str, Any]]:
    """The segmenter whose threshold maximises the pooled Dice on ``volumes`` (image, label).

    Each volume is scored on its central ``crop`` (as harm is). Returns the segmenter and
    a record: threshold, pooled and per-volume training Dice.
    """
    import numpy as np

    from ..consumers.train_smoke import dice_score

    responses, truths = [], []
    for image, label in volumes:
        window = central_crop(image.shape, crop)
        responses.append(tubeness(image[window], volume_scale(image), sigmas))
        truths.append(np.asarray(label)[window] > 0)
    pooled = np.concatenate([r.ravel() for r in responses])
    truth = np.concatenate([t.ravel() for t in truths])
    grid = np.unique(np.quantile(pooled, np.linspace(0.5, 0.999, int(candidates))))
    best, best_dice = float(grid[0]), -1.0
    for value in grid:
        pred = pooled > value
        tp = np.count_nonzero(pred & truth)
        total = np.count_nonzero(pred) + np.count_nonzero(truth)
        dice = 2.0 * tp / total if total else 1.0
        if dice > best_dice + 1e-12:
            best, best_dice = float(value), float(dice)
    scales = tuple(float(s) for s in sigmas)
    segmenter = VesselnessSegmenter(threshold=round(best, 8), sigmas=scales)
    per_volume = [
        round(dice_score(r > segmenter.threshold, t), 6)
        for r, t in zip(responses, truths, strict=True)
    ]
    return segmenter, {
        **segmenter.record(),
        "fitted_on": "clean training volumes, central crop",
        "training_dice_pooled": round(best_dice, 6),
        "training_dice_per_volume": per_volume,
    }
