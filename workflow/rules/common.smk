"""Shared helpers of the workflow: config validation, volume list, input functions
and resource estimators. Imports only the package's light modules (pure Python),
so building the DAG stays fast even at 70 volumes."""

import posixpath
import re
import sys
from urllib.parse import urlsplit
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from minivess_bundle.volumes import (  # noqa: E402
    EBRAINS_LICENCE,
    SYNTHETIC_LICENCE,
    VOLUME_PATTERN,
    resolve_volumes,
)

validate(config, schema="../schemas/config.schema.yaml")

VOLUMES = resolve_volumes(config["volumes"])
SOURCE = config["source"]
LICENCE = SYNTHETIC_LICENCE if SOURCE == "synthetic" else EBRAINS_LICENCE
CONTAINER = config["container_image"]
ENV = "../../envs/minivess.yaml"


wildcard_constraints:
    vol=VOLUME_PATTERN,


ZIP_URL = config["zip"]["url"]


def downloaded_zip():
    """Where the ZIP given by zip.url lands (its file name from the URL)."""
    name = posixpath.basename(urlsplit(ZIP_URL).path)
    if not re.fullmatch(r"[A-Za-z0-9._-]+\.zip", name):
        raise ValueError(
            f"config: zip.url must end in a plain *.zip file name, got {name!r}"
        )
    return f"results/downloads/{name}"


def source_path():
    """The local ZIP or folder of the zip/dir sources, checked at start-up."""
    if SOURCE == "zip" and ZIP_URL:
        return downloaded_zip()
    key = {"zip": "zip", "dir": "dir"}[SOURCE]
    path = config[key]["path"]
    if not path:
        raise ValueError(
            f"config: source is {SOURCE!r} but {key}.path is empty; "
            f"set it, e.g. --config {key}='{{path: /data/...}}'"
        )
    return path


def fetch_input(wildcards):
    """The source a fetch job reads: the ZIP itself (so a new ZIP re-fetches)."""
    if SOURCE == "zip":
        return {"archive": source_path()}
    return {}


def fetch_mem_mb(wildcards):
    """Memory of one fetch job: synthetic generation holds ~40 bytes per voxel
    (mask, float image, noise); zip/dir stream in 1 MiB chunks."""
    if SOURCE != "synthetic":
        return 256
    voxels = config["synthetic"]["size_xy"] ** 2 * config["synthetic"]["max_z"]
    return 300 + voxels * 40 // 2**20


def staged(vol):
    """One volume's files in the staging tree (EBRAINS layout)."""
    return {
        "image": f"results/staging/raw/{vol}.nii.gz",
        "label": f"results/staging/seg/{vol}_y.nii.gz",
        "metadata": f"results/staging/json/{vol}.json",
    }


def renamed(vol):
    """One volume's files in the renamed tree (imagesTr/labelsTr/metadata)."""
    return {
        "image": f"results/renamed/imagesTr/{vol}.nii.gz",
        "label": f"results/renamed/labelsTr/{vol}.nii.gz",
        "metadata": f"results/renamed/metadata/{vol}.json",
    }


def all_outputs():
    """Final targets of `all`, growing with the stages."""
    return [
        *(path for vol in VOLUMES for path in renamed(vol).values()),
        f"results/renamed/metadata/{LICENCE}",
        "results/renamed_inventory.json",
    ]
