"""The segmentation model the ``check`` target trains: BBSD inputs and harm labels.

Imports torch (the ``train`` extra) inside the functions; the pipeline's own jobs never
import this module. The model sees what it was trained on: each volume scaled by its own
1st/99.9th percentiles to [0, 1] and clipped (``ScaleIntensityRangePercentilesd``), a
drifted volume by the drifted volume's percentiles.

- :func:`softmax_features`: per patch, four summaries of the vessel probability
  (:data:`SOFTMAX_NAMES`): the BBSD representation;
- :func:`segment_scores`: Dice and clDice (:func:`minivess_bundle.core.metrics.cldice`) of the
  model's argmax on the central crop (at most ``crop`` voxels, trimmed to a multiple of 4)
  of a volume against that volume's mask. The harm of a variant is the clean score minus
  the drifted one, on the same crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

SOFTMAX_NAMES = ("mean_probability", "foreground_fraction", "mean_entropy", "p95_probability")
PERCENTILES = (1.0, 99.9)
BATCH = 32


def volume_scale(array: np.ndarray) -> tuple[float, float]:
    """The volume's (1st, 99.9th) percentiles: the model's intensity window."""
    import numpy as np

    lo, hi = np.percentile(array, PERCENTILES)
    return float(lo), float(hi)


def normalise(patch: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    import numpy as np

    lo, hi = scale
    width = hi - lo if hi > lo else 1.0
    return np.clip((np.asarray(patch, dtype=np.float32) - lo) / width, 0.0, 1.0)


def probabilities(model: torch.nn.Module, batch: np.ndarray, device: str) -> np.ndarray:
    """Vessel probabilities (softmax channel 1) of a batch of normalised patches (B, x, y, z)."""
    import numpy as np
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(batch), BATCH):
            chunk = torch.from_numpy(np.ascontiguousarray(batch[start : start + BATCH]))
            logits = model(chunk[:, None].to(device).float())
            out.append(torch.softmax(logits, dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *batch.shape[1:]), np.float32)


def softmax_summary(prob: np.ndarray) -> np.ndarray:
    """The :data:`SOFTMAX_NAMES` of one patch's vessel probabilities."""
    import numpy as np

    p = np.clip(prob.astype(np.float64), 1e-7, 1 - 1e-7)
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return np.array(
        [p.mean(), float((p > 0.5).mean()), entropy.mean(), np.quantile(p, 0.95)],
        dtype=np.float64,
    )


def softmax_features(
    model: torch.nn.Module, patches: np.ndarray, scales: Sequence[tuple[float, float]], device: str
) -> np.ndarray:
    """BBSD rows: the softmax summaries of each patch, scaled by its volume's window."""
    import numpy as np

    normalised = np.stack([normalise(p, s) for p, s in zip(patches, scales, strict=True)])
    prob = probabilities(model, normalised, device)
    return np.stack([softmax_summary(p) for p in prob])


def central_crop(shape: Sequence[int], crop: Sequence[int]) -> tuple[slice, ...]:
    """The central window of at most ``crop`` voxels, each side a multiple of 4 (>= 4)."""
    slices = []
    for size, want in zip(shape, crop, strict=True):
        length = max(4, (min(int(size), int(want)) // 4) * 4)
        start = max(0, (int(size) - length) // 2)
        slices.append(slice(start, start + length))
    return tuple(slices)


def segment_scores(
    model: torch.nn.Module,
    image: np.ndarray,
    label: np.ndarray,
    crop: Sequence[int],
    device: str,
) -> dict[str, Any]:
    """Dice and clDice of the model on the central crop of one volume."""
    import numpy as np

    from ..consumers.train_smoke import dice_score
    from ..core.metrics import cldice

    window = central_crop(image.shape, crop)
    part = image[window]
    pad = [(0, max(0, 4 - s)) for s in part.shape]
    scaled = np.pad(normalise(part, volume_scale(image)), pad, mode="edge")
    prob = probabilities(model, scaled[None], device)[0]
    pred = (prob > 0.5)[tuple(slice(0, s) for s in part.shape)].astype(np.uint8)
    truth = (np.asarray(label[window]) > 0).astype(np.uint8)
    return {
        "dice": round(dice_score(pred, truth), 6),
        "cldice": round(float(cldice(pred, truth)), 6),
        "crop": [[s.start, s.stop] for s in window],
    }
