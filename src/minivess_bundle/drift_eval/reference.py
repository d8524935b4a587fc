"""The reference segmenter of the drift benchmark: a MONAI 3-D UNet that can segment.

Harm (:mod:`.harm`) is only as meaningful as the model it is measured on, so this one is
trained properly, and only on the training role (:func:`.roles.training_volumes`), never
on a volume harm is measured on:

- **data**: the training volumes, each scaled by its own (1st, 99.9th) percentiles to
  [0, 1] (:func:`.harm.volume_scale`, as at inference); a seeded :data:`Settings.val_volumes`
  of them are the **validation subset** (early stopping only), the rest are fitted; with a
  single training volume it is both (recorded as ``validated_on: "training"``);
- **patches**: ``patch`` voxels, half of them centred on a random vessel voxel (the other
  half anywhere), a volume smaller than the patch edge-padded (image) / zero-padded (mask);
- **model**: ``monai.networks.nets.UNet`` (channels 16/32/64, strides 2/2, one residual
  unit), ``DiceCELoss``, Adam;
- **stopping**: every ``eval_every`` steps the Dice of the argmax on each validation
  volume's central ``val_crop`` is measured; training stops when the mean has not risen
  by ``min_delta`` for ``patience`` evaluations (a plateau), or at ``max_steps``; the best
  evaluation's weights are kept;
- **device**: CUDA when present (``device: auto``), else CPU with ``threads`` torch threads
  (the job's threads).

:func:`train_reference` writes the weights (:func:`..train_smoke.save_model`) and a JSON
record (config, lists, validation curve, timing, weights' sha256). It is **cached on its
inputs**: the key is the sha256 of the training volumes' bytes, the settings and the seed
(:func:`cache_key`); with ``cache_dir`` a second call with the same key copies the cached
files and does not train. Only this module's job and the scoring job import torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..core.fsio import write_bytes_atomic, write_json_atomic
from .harm import central_crop, normalise, volume_scale
from .sets import DriftEvalError, derive_seed, read_checked

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

log = logging.getLogger(__name__)

MODEL = "monai.networks.nets.UNet"
RECORD_VERSION = 1


@dataclass(frozen=True)
class Settings:
    """How the reference UNet is trained (every field is recorded and part of the cache key)."""

    channels: tuple[int, ...] = (16, 32, 64)
    strides: tuple[int, ...] = (2, 2)
    num_res_units: int = 1
    patch: tuple[int, int, int] = (32, 32, 16)
    batch_size: int = 4
    learning_rate: float = 2e-3
    foreground_share: float = 0.5
    max_steps: int = 600
    eval_every: int = 25
    patience: int = 4
    min_delta: float = 0.002
    val_volumes: int = 3
    val_crop: tuple[int, int, int] = (64, 64, 32)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Settings:
        """Settings with ``values`` overriding the defaults; unknown keys are errors."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise DriftEvalError(
                f"reference settings {unknown}",
                expected=f"some of {sorted(cls.__dataclass_fields__)}",
            )
        cast = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        settings = replace(cls(), **cast)
        factor = math.prod(int(s) for s in settings.strides)
        if any(int(p) % factor for p in settings.patch) or len(settings.patch) != 3:
            raise DriftEvalError(
                f"reference patch {list(settings.patch)}",
                expected=f"three sizes divisible by {factor}",
            )
        if settings.max_steps < 1 or settings.eval_every < 1 or settings.patience < 1:
            raise DriftEvalError(
                "reference max_steps, eval_every and patience",
                expected="each at least 1",
            )
        return settings

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(files: dict[str, dict[str, str]], settings: Settings, seed: int) -> str:
    """sha256 of the training volumes' bytes (image and mask), the settings and the seed."""
    content = {
        "record_version": RECORD_VERSION,
        "seed": int(seed),
        "settings": settings.as_dict(),
        "volumes": {
            vol: [file_sha256(f["image"]), file_sha256(f["label"])]
            for vol, f in sorted(files.items())
        },
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def training_list(bag: str | Path, seed: int) -> tuple[list[str], list[str]]:
    """``(training, excluded)``: the training role (:func:`.roles.training_volumes` of the
    bundle's volumes) without the volumes harm is measured on (those with drift variants in
    the manifest), which are ``excluded``. Harm never scores a volume the model fitted."""
    from ..consumers.monai import find_pairs
    from .roles import training_volumes
    from .sets import read_plan

    pairs, _ = find_pairs(bag)
    role = training_volumes([p["id"] for p in pairs], seed)
    harm_volumes = set(read_plan(bag).held_out)
    training = [v for v in role if v not in harm_volumes]
    if not training:
        raise DriftEvalError(
            f"reference: every training volume {list(role)} has drift variants",
            expected="at least one training volume harm is not measured on",
            path=bag,
        )
    return training, sorted(set(role) & harm_volumes)


class UNetSegmenter:
    """The trained UNet as a segmenter: ``segment(image, window)`` -> uint8 mask of the window."""

    name = "unet"

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        self.model = model
        self.device = device

    def segment(self, image: np.ndarray, window: tuple[slice, ...]) -> np.ndarray:
        import numpy as np

        from .harm import probabilities

        part = np.asarray(image)[window]
        pad = [(0, (-s) % 4 + (4 if s < 4 else 0)) for s in part.shape]
        scaled = np.pad(normalise(part, volume_scale(image)), pad, mode="edge")
        prob = probabilities(self.model, scaled[None], self.device)[0]
        return (prob > 0.5)[tuple(slice(0, s) for s in part.shape)].astype(np.uint8)


def load_segmenter(weights: str | Path, device: str = "cpu") -> UNetSegmenter:
    from ..consumers.train_smoke import load_model

    return UNetSegmenter(load_model(weights, device), device)


def _pad_to(array: np.ndarray, patch: Sequence[int], mode: str) -> np.ndarray:
    import numpy as np

    pad = [(0, max(0, int(p) - s)) for s, p in zip(array.shape, patch, strict=True)]
    if not any(m for _, m in pad):
        return array
    return np.pad(array, pad, mode=mode) if mode == "edge" else np.pad(array, pad)


def sample_batch(
    volumes: list[tuple[np.ndarray, np.ndarray]],
    settings: Settings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` (image, mask) patches: ``foreground_share`` centred on a vessel voxel."""
    import numpy as np

    patch = [int(p) for p in settings.patch]
    images, masks = [], []
    for _ in range(int(settings.batch_size)):
        image, mask = volumes[int(rng.integers(len(volumes)))]
        fg = np.flatnonzero(mask)
        if len(fg) and rng.random() < settings.foreground_share:
            centre = np.unravel_index(int(fg[rng.integers(len(fg))]), mask.shape)
            corner = [
                int(np.clip(c - p // 2, 0, max(0, s - p)))
                for c, p, s in zip(centre, patch, mask.shape, strict=True)
            ]
        else:
            corner = [
                int(rng.integers(0, max(0, s - p) + 1))
                for s, p in zip(mask.shape, patch, strict=True)
            ]
        box = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
        images.append(image[box])
        masks.append(mask[box])
    return np.stack(images)[:, None], np.stack(masks)[:, None]


def _load(files: dict[str, dict[str, str]], patch: Sequence[int]) -> dict[str, tuple]:
    """vol -> (scaled image padded to >= patch, mask uint8 padded, raw image, raw mask)."""
    import numpy as np

    out = {}
    for vol, f in sorted(files.items()):
        image = read_checked(f["image"], None, vol)
        mask = (read_checked(f["label"], None, vol) > 0).astype(np.uint8)
        if image.shape != mask.shape:
            raise DriftEvalError(
                f"image {image.shape} and mask {mask.shape} differ",
                volume=vol,
                expected="one grid",
                path=f["label"],
            )
        scaled = normalise(image, volume_scale(image))
        out[vol] = (_pad_to(scaled, patch, "edge"), _pad_to(mask, patch, "constant"), image, mask)
    return out


def validation_dice(
    segmenter: UNetSegmenter, volumes: dict[str, tuple], crop: Sequence[int]
) -> dict[str, float]:
    """Dice of the segmenter on each volume's central ``crop``."""
    from ..consumers.train_smoke import dice_score

    scores = {}
    for vol, (_, _, image, mask) in sorted(volumes.items()):
        window = central_crop(image.shape, crop)
        scores[vol] = round(dice_score(segmenter.segment(image, window), mask[window]), 6)
    return scores


def split_validation(training: Sequence[str], settings: Settings, seed: int) -> tuple[list, list]:
    """``(fit, validation)``: a seeded ``val_volumes`` of the training list validate (at most
    a quarter, at least one); a single training volume is both."""
    import numpy as np

    vols = sorted(training)
    if len(vols) == 1:
        return vols, vols
    count = max(1, min(int(settings.val_volumes), len(vols) // 4 or 1))
    rng = np.random.default_rng(derive_seed(seed, "drift_eval/reference/validation"))
    val = sorted(vols[i] for i in rng.choice(len(vols), size=count, replace=False))
    return [v for v in vols if v not in val], val


def train_unet(
    files: dict[str, dict[str, str]],
    settings: Settings,
    seed: int,
    device: str,
    threads: int,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train the UNet on ``files`` (vol -> image/label paths) as the module docstring says."""
    import copy

    import numpy as np
    import torch
    from monai.utils import set_determinism

    from ..consumers.train_smoke import build_model, make_loss

    torch.set_num_threads(max(1, int(threads)))
    set_determinism(seed=int(seed) % (2**32))
    torch.manual_seed(int(seed))
    fit, val = split_validation(list(files), settings, seed)
    data = _load(files, settings.patch)
    fit_data = [data[v][:2] for v in fit]
    val_data = {v: data[v] for v in val}
    model = build_model(settings.channels, settings.strides, settings.num_res_units).to(device)
    loss_fn = make_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=float(settings.learning_rate))
    rng = np.random.default_rng(derive_seed(seed, "drift_eval/reference/patches"))
    segmenter = UNetSegmenter(model, device)
    curve: list[dict[str, Any]] = []
    best = {"step": 0, "dice": -1.0}
    best_state = copy.deepcopy(model.state_dict())
    stale, losses, stopped = 0, [], "max_steps"
    for step in range(1, int(settings.max_steps) + 1):
        model.train()
        images, masks = sample_batch(fit_data, settings, rng)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(
            model(torch.from_numpy(images).to(device)), torch.from_numpy(masks).to(device).long()
        )
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach().cpu()))
        if not math.isfinite(losses[-1]):
            raise DriftEvalError(
                f"reference training loss {losses[-1]} at step {step}", expected="finite"
            )
        if step % int(settings.eval_every) and step != int(settings.max_steps):
            continue
        model.eval()
        scores = validation_dice(segmenter, val_data, settings.val_crop)
        mean = round(float(np.mean(list(scores.values()))), 6)
        window = losses[-int(settings.eval_every) :]
        curve.append({"step": step, "dice": mean, "loss": round(float(np.mean(window)), 6)})
        log.info("step %d: loss %.4f, validation Dice %.4f", step, curve[-1]["loss"], mean)
        if mean > best["dice"] + float(settings.min_delta):
            best, stale = {"step": step, "dice": mean}, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= int(settings.patience):
                stopped = "plateau"
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, {
        "fit_volumes": fit,
        "validation_volumes": val,
        "validated_on": "training" if fit == val else "validation subset of the training role",
        "steps": len(losses),
        "stopped": stopped,
        "best": best,
        "curve": curve,
    }


def train_reference(
    bag: str | Path,
    training: Sequence[str],
    weights_out: str | Path,
    record_out: str | Path,
    *,
    seed: int,
    settings: Settings | None = None,
    device: str = "auto",
    threads: int = 1,
    cache_dir: str | Path | None = None,
    vesselness_crop: Sequence[int] = (64, 64, 32),
    excluded: Sequence[str] = (),
) -> dict[str, Any]:
    """Train (or take from ``cache_dir``) the reference UNet and fit the vesselness threshold.

    ``training`` are volume ids of the bundle ``bag`` (:func:`..monai.find_pairs`);
    ``excluded`` are ids that were dropped from the training role because harm is measured
    on them (recorded). Writes ``weights_out`` and ``record_out``; returns the record.
    """
    import numpy as np

    from ..consumers.monai import find_pairs
    from ..consumers.train_smoke import save_model, select_device
    from .vesselness import fit_threshold

    settings = settings or Settings()
    pairs, _ = find_pairs(bag)
    by_id = {p["id"]: p for p in pairs}
    missing = sorted(set(training) - set(by_id))
    if not training or missing:
        raise DriftEvalError(
            f"reference training volumes {missing or '(none)'} not in the bundle",
            expected="volumes the bundle holds",
            path=bag,
        )
    files = {v: {"image": by_id[v]["image"], "label": by_id[v]["label"]} for v in sorted(training)}
    key = cache_key(files, settings, seed)
    cached = Path(cache_dir) / key if cache_dir else None
    if (
        cached is not None
        and (cached / "weights.pt").is_file()
        and (cached / "record.json").is_file()
    ):
        log.info("reference: cache hit %s: not retrained", key[:12])
        write_bytes_atomic(weights_out, (cached / "weights.pt").read_bytes())
        write_json_atomic(record_out, json.loads((cached / "record.json").read_text()))
        return json.loads(Path(record_out).read_text())

    import monai
    import torch

    chosen = select_device(device)
    wall, cpu = time.perf_counter(), time.process_time()
    model, training_record = train_unet(files, settings, seed, chosen, threads)
    trained_wall, trained_cpu = time.perf_counter() - wall, time.process_time() - cpu
    save_model(
        model, weights_out, settings.channels, settings.strides, settings.num_res_units, seed
    )
    volumes = [
        (read_checked(f["image"], None, v), read_checked(f["label"], None, v))
        for v, f in files.items()
    ]
    start = time.perf_counter()
    _, vesselness = fit_threshold(volumes, vesselness_crop)
    vesselness["fit_seconds"] = round(time.perf_counter() - start, 3)
    record = {
        "record_version": RECORD_VERSION,
        "generator": {"module": __name__, "package_version": __version__},
        "cache_key": key,
        "seed": int(seed),
        "training_volumes": sorted(training),
        "excluded_from_training": sorted(excluded),
        "unet": {
            "model": MODEL,
            "loss": "DiceCELoss(to_onehot_y=True, softmax=True)",
            "optimizer": "Adam",
            "normalisation": "per volume (1st, 99.9th) percentiles to [0, 1], clipped",
            "config": settings.as_dict(),
            **training_record,
            "device": chosen,
            "threads": int(threads) if chosen == "cpu" else None,
            "versions": {
                "torch": torch.__version__,
                "monai": monai.__version__,
                "numpy": np.__version__,
            },
            "weights_sha256": file_sha256(weights_out),
            "training_time": {"wall_s": round(trained_wall, 2), "cpu_s": round(trained_cpu, 2)},
        },
        "vesselness": vesselness,
    }
    write_json_atomic(record_out, record)
    if cached is not None:
        cached.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights_out, cached / ".weights.tmp")
        (cached / ".weights.tmp").replace(cached / "weights.pt")
        write_json_atomic(cached / "record.json", record)
    log.info(
        "reference: %d steps (%s), best validation Dice %.4f at step %d, %.1f s",
        training_record["steps"],
        training_record["stopped"],
        training_record["best"]["dice"],
        training_record["best"]["step"],
        trained_wall,
    )
    return record


def check_disjoint(record: dict[str, Any], harm_volumes: Sequence[str]) -> None:
    """A :class:`DriftEvalError` when the model trained on a volume harm is measured on."""
    shared = sorted(set(record["training_volumes"]) & set(harm_volumes))
    if shared:
        raise DriftEvalError(
            f"the reference model trained on {shared}, which harm is measured on",
            volume=shared[0],
            expected="a training list disjoint from the test volumes (retrain the reference)",
        )


def reference_models(record: dict[str, Any], clean: dict[str, Any]) -> dict[str, Any]:
    """``drift_eval.json``'s ``reference_models``: each reference's record and its clean
    Dice and clDice on the test volumes (``clean``: :attr:`.harm.HarmScorer.clean`)."""
    import numpy as np

    def clean_test(name: str) -> dict[str, Any]:
        per_volume = {v: s["by_reference"][name] for v, s in sorted(clean.items())}
        return {
            "volumes": sorted(per_volume),
            "dice_mean": round(float(np.mean([s["dice"] for s in per_volume.values()])), 6),
            "cldice_mean": round(float(np.mean([s["cldice"] for s in per_volume.values()])), 6),
            "per_volume": per_volume,
        }

    return {
        "training_volumes": record["training_volumes"],
        "excluded_from_training": record["excluded_from_training"],
        "test_volumes": sorted(clean),
        "cache_key": record["cache_key"],
        "unet": {**record["unet"], "clean_test": clean_test("unet")},
        "vesselness": {**record["vesselness"], "clean_test": clean_test("vesselness")},
    }


#: fine-tuning for the label harm: steps from the reference weights, and the learning rate
FINE_TUNE = {"steps": 30, "learning_rate": 5e-4}


def fine_tune(
    weights: str | Path,
    image: np.ndarray,
    mask: np.ndarray,
    settings: Settings,
    seed: int,
    device: str,
    steps: int,
    learning_rate: float,
) -> UNetSegmenter:
    """The reference UNet after ``steps`` Adam steps on patches of one volume and mask."""
    import numpy as np
    import torch

    from ..consumers.train_smoke import load_model, make_loss

    torch.manual_seed(int(seed))
    model = load_model(weights, device)
    data = [
        (
            _pad_to(normalise(image, volume_scale(image)), settings.patch, "edge"),
            _pad_to((np.asarray(mask) > 0).astype(np.uint8), settings.patch, "constant"),
        )
    ]
    optimizer = torch.optim.Adam(model.parameters(), lr=float(learning_rate))
    loss_fn = make_loss()
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(int(steps)):
        images, masks = sample_batch(data, settings, rng)
        optimizer.zero_grad(set_to_none=True)
        logits = model(torch.from_numpy(images).to(device))
        loss = loss_fn(logits, torch.from_numpy(masks).to(device).long())
        loss.backward()
        optimizer.step()
    model.eval()
    return UNetSegmenter(model, device)


def label_harm(
    bag: str | Path,
    weights: str | Path,
    record_path: str | Path,
    out_json: str | Path,
    *,
    seed: int,
    crop: Sequence[int] = (64, 64, 32),
    device: str = "auto",
    threads: int = 1,
    steps: int = FINE_TUNE["steps"],
    learning_rate: float = FINE_TUNE["learning_rate"],
) -> dict[str, Any]:
    """The named harm of the label-only kinds (a changed mask, the same image).

    For each label-only (kind, level) set and each of its volumes ``v``: the reference UNet
    is fine-tuned for ``steps`` steps on ``v`` with its **drifted** mask, and, as the
    control, with its **clean** mask (the same seed and patches). Both are scored on the
    clean masks of the *other* test volumes (``v`` itself when it is the only one), on the
    central ``crop``. Label harm = control Dice - drifted-label Dice (and clDice), mean over
    (``v``, scored volume) pairs, with :func:`.harm.harm_interval`'s bootstrap. Writes and
    returns the result.
    """
    import torch

    from ..consumers.train_smoke import select_device
    from .harm import central_crop, harm_interval, overlap_counts
    from .sets import read_plan

    torch.set_num_threads(max(1, int(threads)))
    record = json.loads(Path(record_path).read_text())
    plan = read_plan(bag)
    check_disjoint(record, plan.held_out)
    settings = Settings.from_dict(record["unet"]["config"])
    chosen = select_device(device)
    clean = {
        v: (
            read_checked(plan.clean[v]["image"], plan.clean[v].get("image_sha256"), v),
            read_checked(plan.clean[v]["label"], plan.clean[v].get("label_sha256"), v),
        )
        for v in plan.held_out
    }

    def counts_on(segmenter: UNetSegmenter, vols: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for v in vols:
            image, label = clean[v]
            window = central_crop(image.shape, crop)
            out[v] = overlap_counts(segmenter.segment(image, window), label[window] > 0)
        return out

    def scored_on(v: str) -> list[str]:
        others = [u for u in plan.held_out if u != v]
        return others or [v]

    controls: dict[str, dict[str, np.ndarray]] = {}
    sets = []
    start = time.perf_counter()
    for kind, level in plan.groups:
        variants = plan.variants[(kind, level)]
        if not all(f["same_image"] for f in variants.values()):
            continue
        clean_counts, drift_counts, pairs = [], [], []
        for v, files in sorted(variants.items()):
            tune_seed = derive_seed(seed, "drift_eval/label_harm", v)
            if v not in controls:
                tuned = fine_tune(
                    weights,
                    clean[v][0],
                    clean[v][1],
                    settings,
                    tune_seed,
                    chosen,
                    steps,
                    learning_rate,
                )
                controls[v] = counts_on(tuned, scored_on(v))
            drifted_mask = read_checked(files["label"], files["label_sha256"], v)
            tuned = fine_tune(
                weights,
                clean[v][0],
                drifted_mask,
                settings,
                tune_seed,
                chosen,
                steps,
                learning_rate,
            )
            drifted = counts_on(tuned, scored_on(v))
            for u in scored_on(v):
                clean_counts.append(controls[v][u])
                drift_counts.append(drifted[u])
                pairs.append([v, u])
            log.info("label harm %s/%s: %s fine-tuned", kind, level, v)
        interval = harm_interval(
            clean_counts, drift_counts, seed=derive_seed(seed, "drift_eval/label_harm", kind, level)
        )
        sets.append(
            {
                "kind": kind,
                "level": int(level),
                "pairs": pairs,
                **{k: interval[k] for k in ("dice_drop", "dice_drop_interval")},
                **{k: interval[k] for k in ("cldice_drop", "cldice_drop_interval")},
                "bootstrap": interval["bootstrap"],
            }
        )
    result = {
        "what": "label harm: Dice / clDice drop on clean test masks of the reference UNet "
        "fine-tuned on a drifted mask, against the same fine-tuning on the clean mask",
        "fine_tuning": {
            "from_weights_sha256": record["unet"]["weights_sha256"],
            "steps": int(steps),
            "learning_rate": float(learning_rate),
            "optimizer": "Adam",
            "patches": "as the reference training (Settings.patch, batch_size, foreground_share)",
            "scored_on": "the clean masks of the other test volumes (the volume itself when alone)",
            "crop": [int(c) for c in crop],
            "device": chosen,
        },
        "sets": sets,
        "timing": {"wall_s": round(time.perf_counter() - start, 2)},
    }
    write_json_atomic(out_json, result)
    return result
