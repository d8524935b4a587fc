"""The drift evaluation's specs: the config parameters each of its rules passes (``--spec``),
named as the config's keys. One spec per command, so a job reruns only when what it reads
changes (a ``drift_eval`` setting does not retrain the reference UNet). Standard library
only: the workflow builds them while it plans."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReferenceSpec:
    """``drift-eval-reference``: the global ``seed`` and the ``reference_model`` block (the
    device it trains on, its settings overriding :class:`.reference.Settings`)."""

    seed: int
    device: str
    settings: Mapping[str, Any]

    STAGE = "drift-eval-reference"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReferenceSpec:
        """The spec of a validated config."""
        return cls(seed=config["seed"], **config["reference_model"])


@dataclass(frozen=True)
class LabelHarmSpec:
    """``drift-eval-label-harm``: the global ``seed``, the reference model's ``device`` and
    the scored central crop (``drift_eval.harm_crop``)."""

    seed: int
    device: str
    harm_crop: tuple[int, ...]

    STAGE = "drift-eval-label-harm"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LabelHarmSpec:
        """The spec of a validated config."""
        return cls(
            seed=config["seed"],
            device=config["reference_model"]["device"],
            harm_crop=tuple(config["drift_eval"]["harm_crop"]),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelHarmSpec:
        return cls(**{**data, "harm_crop": tuple(data["harm_crop"])})


@dataclass(frozen=True)
class DriftEvalSpec:
    """``drift-eval``: the global ``seed`` and the ``drift_eval`` block (the protocol's
    settings, as :func:`.protocol.run_drift_eval` reads them)."""

    seed: int
    drift_eval: Mapping[str, Any]

    STAGE = "drift-eval"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DriftEvalSpec:
        """The spec of a validated config."""
        return cls(seed=config["seed"], drift_eval=config["drift_eval"])
