"""Volume identifiers and the file names each layout gives them.

MiniVess volumes are ``mv01`` .. ``mv70``. Ids are checked against
:data:`VOLUME_PATTERN` everywhere (config, CLI, Snakemake wildcards), so no
other string ever reaches a file name or a shell command.
"""

from __future__ import annotations

import re

from .errors import ConfigError

#: ASCII digits only (``\d`` would take other scripts' digits); always matched whole
#: (:meth:`re.Pattern.fullmatch`: ``$`` alone would let ``"mv01\n"`` through).
VOLUME_PATTERN = r"mv[0-9]{2}"
VOLUME_RE = re.compile(VOLUME_PATTERN)
ALL_VOLUMES = tuple(f"mv{i:02d}" for i in range(1, 71))

#: Name of the licence file in the EBRAINS release (kept verbatim in staging).
EBRAINS_LICENCE = "Licence (CCBY-NC-SA).pdf"
#: Name of the licence/attribution note the synthetic source writes instead.
SYNTHETIC_LICENCE = "LICENCE-synthetic.txt"


def check_volume_id(volume: str) -> str:
    """Return ``volume`` if it is ``mvNN``; raise :class:`ConfigError` otherwise."""
    if not isinstance(volume, str) or not VOLUME_RE.fullmatch(volume):
        raise ConfigError(
            f"volume id {volume!r} is not allowed", expected="mv and two ASCII digits, e.g. mv07"
        )
    return volume


def resolve_volumes(selection: str | list[str]) -> list[str]:
    """Expand the config's ``volumes`` value (``"all"`` or a list) to sorted unique ids."""
    if selection == "all":
        return list(ALL_VOLUMES)
    if isinstance(selection, str) or not selection:
        raise ConfigError(
            f"volumes: {selection!r} is not allowed", expected='"all" or a non-empty list of mvNN'
        )
    return sorted({check_volume_id(v) for v in selection})


def staging_names(volume: str) -> dict[str, str]:
    """Relative paths of one volume's files in the EBRAINS layout (raw/seg/json)."""
    check_volume_id(volume)
    return {
        "image": f"raw/{volume}.nii.gz",
        "label": f"seg/{volume}_y.nii.gz",
        "metadata": f"json/{volume}.json",
    }


def renamed_names(volume: str) -> dict[str, str]:
    """Relative paths of one volume's files in the imagesTr/labelsTr/metadata layout."""
    check_volume_id(volume)
    return {
        "image": f"imagesTr/{volume}.nii.gz",
        "label": f"labelsTr/{volume}.nii.gz",
        "metadata": f"metadata/{volume}.json",
    }
