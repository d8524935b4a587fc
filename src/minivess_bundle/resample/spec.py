"""The resample stage's one spec: the parameters the rule passes (``minivess-bundle resample
--spec``), named as the config's keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResampleSpec:
    """The resample stage's parameters: its fields are the config's keys (``resample``,
    ``validate.source_units``, ``compression``), so :meth:`from_config` maps them by name
    and the rule passes this one spec (``minivess-bundle resample --spec``)."""

    target_spacing_um: str | tuple[float, ...]
    image_interpolator: str
    label_interpolator: str
    max_output_voxels: int
    source_units: str
    codec: str
    level: int

    STAGE = "resample"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ResampleSpec:
        """The spec of a validated config."""
        return cls.from_dict(
            {
                **config["resample"],
                "source_units": config["validate"]["source_units"],
                **config["compression"],
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResampleSpec:
        """The spec from its JSON shape (a spacing list becomes a tuple of floats)."""
        spacing = data["target_spacing_um"]
        spacing = spacing if spacing == "native" else tuple(float(v) for v in spacing)
        return cls(**{**data, "target_spacing_um": spacing})
