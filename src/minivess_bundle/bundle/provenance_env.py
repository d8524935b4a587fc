"""Where the bundle was built: the container image, when inside one.

Podman writes ``/run/.containerenv`` into every container; with ``--privileged`` it holds
``engine``, ``name``, ``id``, ``image``, ``imageid`` and ``rootless`` as ``key="value"``
lines (unprivileged, the file exists but is empty: podman does not expose the image there).
:func:`container_image` turns it into the image's name and id (the id is the image digest
``podman image inspect --format {{.Id}}`` prints), recorded in the bundle's provenance, so a
bundle names the exact image that built it. Only the image's identity is kept: the
container's own name and id change with every run and would break byte-reproducibility.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

CONTAINERENV = Path("/run/.containerenv")


def parse_containerenv(text: str) -> dict[str, str]:
    """``key="value"`` lines (podman quotes the values with Go's %q) as a dict."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip('"')]
        fields[key.strip()] = parts[0] if parts else ""
    return fields


def container_image(path: str | Path = CONTAINERENV) -> dict[str, Any] | None:
    """``{"engine", "image", "imageid"}`` of the container this process runs in, or None
    outside a container or where the engine does not expose the image (an unprivileged
    podman container, whose ``.containerenv`` is empty)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = parse_containerenv(text)
    if not fields.get("imageid"):
        return None
    return {
        "engine": fields.get("engine") or None,
        "image": fields.get("image") or None,
        "imageid": fields["imageid"],
    }
