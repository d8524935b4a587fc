"""The validate stage's one spec: the parameters its rules pass (``--spec``), named as the
config's ``validate`` keys. Standard library only: the workflow builds it while it plans."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class ValidateSpec:
    """The ``validate`` block: what each volume is checked against (:meth:`rules`) and what
    a failure does (``on_invalid``: fail or quarantine)."""

    modality: str
    source_units: str
    on_invalid: str
    image_dtype: str | tuple[str, ...]
    label_dtype: str | tuple[str, ...]
    foreground_fraction: tuple[float, float]

    STAGE = "validate"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ValidateSpec:
        """The spec of a validated config."""
        return cls.from_dict(config["validate"])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidateSpec:
        """The spec from its JSON shape (lists become tuples)."""
        return cls(**{key: _frozen(value) for key, value in data.items()})

    def rules(self) -> dict[str, Any]:
        """The rules each volume is checked against: the block without its policy
        (``on_invalid`` decides what a failure does, not what is checked)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
            if key != "on_invalid"
        }
