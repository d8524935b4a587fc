"""A training smoke test: one epoch of a small 3-D UNet on the bundle's patches.

Proves the bundle trains (the dataset plan's acceptance "training runs on the real
NIfTI data for at least 1 epoch"), not that it trains well. :func:`train_smoke`
builds the :mod:`minivess_bundle.consumers.monai` datalist and loaders, trains
``monai.networks.nets.UNet`` (3 levels, 8/16/32 channels) with ``DiceCELoss`` and
Adam, validates whole volumes by sliding-window inference, and writes
``smoke_metrics.json``::

    {"status": "ok",
     "device": "cpu" | "cuda",
     "versions": {"torch", "monai", "numpy", "minivess_bundle"},
     "seed": 0,
     "config": {"epochs", "patch_size", "num_samples", "batch_size", "learning_rate",
                "channels", "strides", "num_res_units", "loss", "optimizer",
                "normalisation", "spacing_um", "pixdim", "val_fraction", "max_val_volumes",
                "cache_rate",
                "sliding_window": {"roi_size", "overlap", "sw_batch_size"}},
     "data": {"source", "training_ids", "held_out_ids", "validation_ids", "validated_on"},
     "loss": {"per_step": [...], "per_epoch_mean": [...], "first", "last", "steps"},
     "validation": {"dice", "cldice", "per_volume": {"mv03": {"dice", "cldice",
                    "foreground_true", "foreground_predicted"}}},
     "timing": {"seconds": {"total", "cache", "train", "validation"}}}

Everything except ``timing`` depends only on the data, the arguments and the
device: seeds are fixed for torch, numpy and MONAI (``set_determinism``), the
split and crops are seeded. ``timing`` is measured, so the file as a whole is not
byte-reproducible; compare it without that key. No path appears in the file.

clDice is :func:`minivess_bundle.core.metrics.cldice` (Shit et al., CVPR 2021, on
:func:`skimage.morphology.skeletonize` centrelines).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..core.errors import ConsumerError
from ..core.fsio import write_json_atomic
from .monai import DEFAULT_PATCH, PERCENTILES, datalist, entry_id, make_loaders, target_pixdim

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

log = logging.getLogger(__name__)

DEFAULT_CHANNELS = (8, 16, 32)
DEFAULT_STRIDES = (2, 2)
SW_OVERLAP = 0.25
SW_BATCH = 4
DEVICES = ("auto", "cpu", "cuda")


def select_device(device: str = "auto") -> str:
    """``"cuda"`` for ``"auto"`` when torch sees a GPU, else ``"cpu"``; check explicit choices."""
    import torch

    if device not in DEVICES:
        raise ConsumerError(f"device {device!r} is not known", expected=" or ".join(DEVICES))
    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if device == "cuda" and not available:
        raise ConsumerError("device cuda was asked for but torch sees no GPU", expected="auto/cpu")
    return device


def build_model(
    channels: Sequence[int] = DEFAULT_CHANNELS,
    strides: Sequence[int] = DEFAULT_STRIDES,
    num_res_units: int = 1,
) -> torch.nn.Module:
    """A small 3-D ``monai.networks.nets.UNet``: 1 input channel, 2 output classes."""
    from monai.networks.nets import UNet

    if len(strides) != len(channels) - 1:
        raise ConsumerError(
            f"{len(channels)} channel levels with {len(strides)} strides",
            expected="one stride fewer than channel levels",
        )
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=tuple(int(c) for c in channels),
        strides=tuple(int(s) for s in strides),
        num_res_units=int(num_res_units),
    )


def make_loss() -> Any:
    """Dice + cross-entropy on softmax outputs against one-hot labels (background included)."""
    from monai.losses import DiceCELoss

    return DiceCELoss(to_onehot_y=True, softmax=True)


def train_step(
    model: torch.nn.Module,
    batch: dict[str, Any],
    loss_fn: Any,
    optimizer: torch.optim.Optimizer,
    device: str,
) -> float:
    """One optimiser step on ``batch`` (``image``, ``label``); returns the loss."""
    model.train()
    images = batch["image"].to(device).float()
    labels = batch["label"].to(device).long()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(images), labels)
    loss.backward()
    optimizer.step()
    return float(loss.detach().cpu())


def dice_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks; two empty masks agree (1.0)."""
    import numpy as np

    a, b = np.asarray(pred) > 0, np.asarray(truth) > 0
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return float(2.0 * np.count_nonzero(a & b) / total)


def validate(
    model: torch.nn.Module,
    loader: Any,
    ids: Sequence[str],
    roi_size: Sequence[int],
    device: str,
    overlap: float = SW_OVERLAP,
) -> dict[str, Any]:
    """Dice and clDice of the argmax prediction per whole volume, and their means.

    Prediction is :func:`monai.inferers.sliding_window_inference` with windows of
    ``roi_size`` (``overlap``, Gaussian weighting), so volumes of any size work.
    """
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference

    from ..core.metrics import cldice

    model.eval()
    per_volume: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for volume, batch in zip(ids, loader, strict=True):
            image = batch["image"].to(device).float()
            logits = sliding_window_inference(
                image,
                roi_size=tuple(int(r) for r in roi_size),
                sw_batch_size=SW_BATCH,
                predictor=model,
                overlap=float(overlap),
                mode="gaussian",
            )
            pred = logits.argmax(dim=1)[0].cpu().numpy().astype(np.uint8)
            truth = np.asarray(batch["label"][0, 0].cpu().numpy() > 0, dtype=np.uint8)
            per_volume[volume] = {
                "dice": dice_score(pred, truth),
                "cldice": cldice(pred, truth),
                "foreground_true": float(truth.mean()),
                "foreground_predicted": float(pred.mean()),
            }
    scores = list(per_volume.values())
    return {
        "dice": float(np.mean([s["dice"] for s in scores])) if scores else math.nan,
        "cldice": float(np.mean([s["cldice"] for s in scores])) if scores else math.nan,
        "per_volume": per_volume,
    }


def save_model(
    model: torch.nn.Module,
    out: str | Path,
    channels: Sequence[int],
    strides: Sequence[int],
    num_res_units: int,
    seed: int,
) -> None:
    """Write the weights and the architecture (``torch.save``, atomic): :func:`load_model`."""
    import io

    import torch

    from ..core.fsio import write_bytes_atomic

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(
        {
            "architecture": {
                "channels": [int(c) for c in channels],
                "strides": [int(s) for s in strides],
                "num_res_units": int(num_res_units),
            },
            "normalisation": {"percentiles": list(PERCENTILES), "range": [0.0, 1.0]},
            "seed": int(seed),
            "state_dict": state,
        },
        buffer,
    )
    write_bytes_atomic(out, buffer.getvalue())


def load_model(path: str | Path, device: str = "cpu") -> torch.nn.Module:
    """The UNet :func:`save_model` wrote, in eval mode on ``device``."""
    import torch

    saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_model(**saved["architecture"])
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()


@dataclass(frozen=True)
class SmokeSettings:
    """How the smoke training runs (every field recorded in the metrics' ``config``).

    ``patch_size`` must be divisible by the product of ``strides`` (4 by default).
    ``spacing_um`` resamples on the fly (Spacingd) to that spacing in micrometres,
    converted to the files' unit; ``None`` keeps the bundle's grid. ``max_steps`` caps
    the steps per epoch (``None``: the whole epoch). ``cache_rate`` ``None`` caches
    nothing for one epoch (each volume is read once anyway; this keeps memory at one
    batch for the real 512 x 512 volumes) and everything for more. Validation runs on
    the first ``max_val_volumes`` held-out volumes by id (``None``: all of them).
    """

    epochs: int = 1
    patch_size: Sequence[int] = DEFAULT_PATCH
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.2
    spacing_um: Sequence[float] | None = None
    num_samples: int = 2
    batch_size: int = 2
    learning_rate: float = 1e-3
    channels: Sequence[int] = DEFAULT_CHANNELS
    strides: Sequence[int] = DEFAULT_STRIDES
    num_res_units: int = 1
    cache_rate: float | None = None
    max_steps: int | None = None
    max_val_volumes: int | None = 2
    sw_overlap: float = SW_OVERLAP

    def patch(self) -> tuple[int, ...]:
        """The patch size, checked to fit the UNet; also checks ``epochs``."""
        patch = tuple(int(p) for p in self.patch_size)
        factor = math.prod(int(s) for s in self.strides)
        if len(patch) != 3 or any(p <= 0 or p % factor for p in patch):
            raise ConsumerError(
                f"patch size {list(patch)} does not fit the UNet",
                expected=f"three positive sizes divisible by {factor}",
            )
        if self.epochs < 1:
            raise ConsumerError(f"epochs {self.epochs}", expected="at least 1")
        return patch


def _split(data_path: str | Path, settings: SmokeSettings) -> tuple[dict, list[str], str]:
    """``(files, held-out ids, what validation ran on)``: the datalist split, validation
    capped at ``max_val_volumes``; with a single volume, validation is the training one."""
    files = datalist(data_path, val_fraction=settings.val_fraction, seed=settings.seed)
    held_out = [entry_id(e) for e in files["validation"]]
    validated_on = "validation"
    if not files["validation"]:
        files = dict(files, validation=list(files["training"]))
        validated_on = "training (no volume held out)"
    if settings.max_val_volumes is not None:
        files = dict(files, validation=files["validation"][: max(1, settings.max_val_volumes)])
    return files, held_out, validated_on


def _train(model, train_loader, settings: SmokeSettings, device: str) -> list[list[float]]:
    """The loss of every step, per epoch (``max_steps`` caps the steps of an epoch)."""
    import torch

    loss_fn = make_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    epochs = []
    for epoch in range(int(settings.epochs)):
        losses = []
        for step, batch in enumerate(train_loader):
            if settings.max_steps is not None and step >= settings.max_steps:
                break
            losses.append(train_step(model, batch, loss_fn, optimizer, device))
            log.info("epoch %d step %d loss %.4f", epoch + 1, step + 1, losses[-1])
        epochs.append(losses)
    return epochs


def _config_record(
    settings: SmokeSettings, patch: tuple[int, ...], pixdim, cache_rate: float
) -> dict[str, Any]:
    s = settings
    return {
        "epochs": int(s.epochs),
        "max_steps": s.max_steps,
        "patch_size": list(patch),
        "num_samples": int(s.num_samples),
        "batch_size": int(s.batch_size),
        "learning_rate": float(s.learning_rate),
        "channels": [int(c) for c in s.channels],
        "strides": [int(v) for v in s.strides],
        "num_res_units": int(s.num_res_units),
        "model": "monai.networks.nets.UNet",
        "loss": "DiceCELoss(to_onehot_y=True, softmax=True)",
        "optimizer": "Adam",
        "normalisation": {
            "transform": "ScaleIntensityRangePercentilesd",
            "percentiles": list(PERCENTILES),
            "range": [0.0, 1.0],
            "clip": True,
        },
        "spacing_um": None if s.spacing_um is None else [float(v) for v in s.spacing_um],
        "pixdim": None if pixdim is None else list(pixdim),
        "val_fraction": float(s.val_fraction),
        "max_val_volumes": s.max_val_volumes,
        "cache_rate": float(cache_rate),
        "sliding_window": {
            "roi_size": list(patch),
            "overlap": float(s.sw_overlap),
            "sw_batch_size": SW_BATCH,
            "mode": "gaussian",
        },
    }


def train_smoke(
    data_path: str | Path,
    out_json: str | Path,
    settings: SmokeSettings | None = None,
    *,
    model_out: str | Path | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train a small UNet on ``data_path`` as ``settings`` say and write ``out_json``.

    ``data_path`` is anything :func:`minivess_bundle.consumers.monai.datalist` reads (a bundle
    folder, its ``data/``, a loader layout). ``overrides`` replace fields of
    ``settings`` (:class:`SmokeSettings`), e.g. ``train_smoke(bag, out, epochs=2)``.
    Validation is sliding-window inference over whole volumes (seconds per volume on
    a CPU; a smoke test needs a finite figure, not a benchmark). ``model_out``, when
    given, receives the trained weights (:func:`save_model`; the drift evaluation's
    BBSD and harm labels use them). Returns the metrics written.
    """
    import monai
    import numpy as np
    import torch
    from monai.utils import set_determinism

    settings = replace(settings or SmokeSettings(), **overrides)
    start = time.perf_counter()
    patch = settings.patch()
    chosen = select_device(settings.device)
    seed = int(settings.seed)
    set_determinism(seed=seed)
    torch.manual_seed(seed)
    np.random.seed(seed)

    files, held_out, validated_on = _split(data_path, settings)
    cache_rate = settings.cache_rate
    if cache_rate is None:
        cache_rate = 0.0 if settings.epochs == 1 else 1.0
    pixdim = None
    if settings.spacing_um is not None:
        paths = [e[k] for e in files["training"] + files["validation"] for k in ("image", "label")]
        pixdim = target_pixdim(settings.spacing_um, paths)
    train_loader, val_loader = make_loaders(
        files,
        patch_size=patch,
        spacing=pixdim,
        num_samples=settings.num_samples,
        batch_size=settings.batch_size,
        cache_rate=cache_rate,
        num_workers=0,
        seed=seed,
    )
    cached = time.perf_counter()

    arch = (settings.channels, settings.strides, settings.num_res_units)
    model = build_model(*arch).to(chosen)
    epochs = _train(model, train_loader, settings, chosen)
    per_step = [loss for losses in epochs for loss in losses]
    per_epoch = [float(np.mean(losses)) if losses else math.nan for losses in epochs]
    trained = time.perf_counter()

    val_ids = [entry_id(e) for e in files["validation"]]
    validation = validate(model, val_loader, val_ids, patch, chosen, settings.sw_overlap)
    done = time.perf_counter()
    if not all(math.isfinite(v) for v in per_step):
        raise ConsumerError(
            f"training loss is not finite ({per_step})", expected="finite loss at every step"
        )

    metrics = {
        "status": "ok",
        "device": chosen,
        "versions": {
            "torch": torch.__version__,
            "monai": monai.__version__,
            "numpy": np.__version__,
            "minivess_bundle": __version__,
        },
        "seed": seed,
        "config": _config_record(settings, patch, pixdim, cache_rate),
        "data": {
            "source": files["split"]["source"],
            "training_ids": [entry_id(e) for e in files["training"]],
            "held_out_ids": held_out,
            "validation_ids": val_ids,
            "validated_on": validated_on,
        },
        "loss": {
            "per_step": per_step,
            "per_epoch_mean": per_epoch,
            "first": per_step[0] if per_step else None,
            "last": per_step[-1] if per_step else None,
            "steps": len(per_step),
        },
        "validation": validation,
        "timing": {
            "seconds": {
                "total": round(done - start, 3),
                "cache": round(cached - start, 3),
                "train": round(trained - cached, 3),
                "validation": round(done - trained, 3),
            }
        },
    }
    if model_out is not None:
        save_model(model, model_out, *arch, seed)
    write_json_atomic(out_json, metrics)
    log.info(
        "smoke: %d steps on %s, loss %.4f -> %.4f, val Dice %.3f clDice %.3f, %.1f s",
        len(per_step),
        chosen,
        per_step[0] if per_step else math.nan,
        per_step[-1] if per_step else math.nan,
        validation["dice"],
        validation["cldice"],
        done - start,
    )
    return metrics
