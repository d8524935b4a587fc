"""The drift stage's one spec: the config parameters its rules pass (``--spec``), named as the
config's keys. What the plan decides per job (levels, a kind's parameters, the reference
volumes, the set pool) goes beside it on the command line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DriftSpec:
    """The global ``seed`` every variant's seed derives from, and the ``compression`` of the
    files written (``drift``, ``drift-select``)."""

    seed: int
    codec: str
    level: int

    STAGE = "drift"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DriftSpec:
        """The spec of a validated config."""
        return cls(seed=config["seed"], **config["compression"])

    def compression(self):
        """The gzip settings of the written files (:class:`.variant.Compression`)."""
        from .variant import Compression

        return Compression(self.codec, self.level)
