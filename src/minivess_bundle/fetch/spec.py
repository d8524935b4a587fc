"""The fetch stage's specs: the parameters its rules pass (``--spec``), named as the config's
keys. Standard library only: the workflow builds them while it plans."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FetchSpec:
    """How ``fetch`` and ``fetch-licence`` land a volume of the zip, dir or synthetic source:
    the config's ``source``, ``seed``, ``synthetic`` and ``compression`` keys. The source's
    path (the ZIP or folder) is a file the job reads and goes on the command line."""

    source: str
    seed: int
    size_xy: int
    max_z: int
    codec: str
    level: int

    STAGE = "fetch"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FetchSpec:
        """The spec of a validated config."""
        return cls(
            source=config["source"],
            seed=config["seed"],
            **config["synthetic"],
            **config["compression"],
        )


@dataclass(frozen=True)
class EbrainsSpec:
    """How the EBRAINS commands (``ebrains-list``, ``ebrains-fetch``, ``ebrains-licence``)
    reach the data-proxy: the config's ``ebrains`` block."""

    api_base: str
    dataset_id: str
    ca_bundle: str
    max_attempts: int

    STAGE = "ebrains"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EbrainsSpec:
        """The spec of a validated config."""
        return cls(**config["ebrains"])

    def client_settings(self):
        """The data-proxy client's settings (its timeouts and back-off as they are)."""
        from .ebrains import ClientSettings

        return ClientSettings(**asdict(self))


@dataclass(frozen=True)
class DownloadSpec:
    """What ``download-url`` fetches and checks: the config's ``zip`` URL, size and MD5, and
    the ``ebrains`` block's CA bundle and attempts."""

    url: str
    bytes: int
    md5: str
    ca_bundle: str
    max_attempts: int

    STAGE = "download"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DownloadSpec:
        """The spec of a validated config."""
        archive, client = config["zip"], config["ebrains"]
        return cls(
            url=archive["url"],
            bytes=archive["bytes"],
            md5=archive["md5"],
            ca_bundle=client["ca_bundle"],
            max_attempts=client["max_attempts"],
        )

    def client_settings(self):
        """The download client's settings (no data-proxy: a plain URL)."""
        from .ebrains import ClientSettings

        return ClientSettings(ca_bundle=self.ca_bundle, max_attempts=self.max_attempts)
