"""Where every file of a build lives: the one place that spells a ``results/`` path.

Each stage's files are path *templates* with Snakemake-style wildcards (``{vol}``,
``{drift}``, ``{level}``). The workflow uses them unfilled as rule inputs and outputs;
the CLI, the report, the bench and the tests fill them with :func:`fill` or the small
helpers below. Relative to the working directory, as Snakemake runs.

=====================  ==================================================================
stage                  files
=====================  ==================================================================
fetch (staging)        ``results/staging/<vol>.<random>/{raw,seg,json}/`` (EBRAINS names; one
                       folder per fetch job, removed when it ends)
downloads              ``results/downloads/`` (ZIP, EBRAINS listing and object cache)
rename (in fetch)      ``results/renamed/{imagesTr,labelsTr,metadata}/``
fingerprint            ``results/fingerprint.json`` (full real builds: the authors' DVC hash)
validate               ``results/validation/{vol}.json``, ``results/validation_report.json``
resample               ``results/processed/{imagesTr,labelsTr,metadata}/``,
                       ``results/resample/{vol}.json``
drift                  ``results/drift/{drift}/{level}/{imagesTr,labelsTr}/``,
                       ``results/drift_entries/``, ``results/drift_manifest.json``
bundle                 ``results/bundle/minivess-<version>{/,.tar,.dvc,...}``
ome-zarr (optional)    ``results/omezarr/{vol}.ome.zarr/``, ``results/omezarr/{vol}.json``
report                 ``results/report/``
hf (on demand)         ``results/hf/minivess-<version>/`` (Hugging Face niftifolder + card)
check                  ``results/check/``, ``results/nnunet/``
drift_eval             ``results/drift_eval/`` (detector power, false alarms, harm, figures)
=====================  ==================================================================
"""

from __future__ import annotations

from .dataset import NNUNET_NAME
from .volumes import check_volume_id, renamed_names

RESULTS = "results"

STAGING_ROOT = f"{RESULTS}/staging"
DOWNLOADS_ROOT = f"{RESULTS}/downloads"
RENAMED_ROOT = f"{RESULTS}/renamed"
PROCESSED_ROOT = f"{RESULTS}/processed"
DRIFT_ROOT = f"{RESULTS}/drift"
BUNDLE_ROOT = f"{RESULTS}/bundle"
#: A bag's folder name is this prefix and the bundle version (``minivess-0.1.0``).
BAG_PREFIX = "minivess-"
#: The bag's payload folder (BagIt) and its sections, in the order the bag lists them.
BAG_PAYLOAD = "data"
BAG_SECTIONS = ("raw", "processed", "drift", "quarantine")
REPORT_ROOT = f"{RESULTS}/report"
OMEZARR_ROOT = f"{RESULTS}/omezarr"
HF_ROOT = f"{RESULTS}/hf"

#: One volume's files under the names MONAI and nnU-Net expect (bytes untouched).
RENAMED = {role: f"{RENAMED_ROOT}/{name}" for role, name in renamed_names("mv00").items()}
#: One validated volume on the target grid (metadata carried over unchanged).
PROCESSED = {role: f"{PROCESSED_ROOT}/{name}" for role, name in renamed_names("mv00").items()}
for _files in (RENAMED, PROCESSED):
    for _role, _path in _files.items():
        _files[_role] = _path.replace("mv00", "{vol}")

EBRAINS_LISTING = f"{DOWNLOADS_ROOT}/ebrains/listing.json"
INVENTORY = f"{RESULTS}/renamed_inventory.json"
VALIDATION = f"{RESULTS}/validation/{{vol}}.json"
VALIDATION_REPORT = f"{RESULTS}/validation_report.json"
RESAMPLE_RECORD = f"{RESULTS}/resample/{{vol}}.json"

#: One drift variant of one volume: type ``{drift}``, level ``{level}``.
DRIFT_VARIANT = {
    "image": f"{DRIFT_ROOT}/{{drift}}/{{level}}/imagesTr/{{vol}}.nii.gz",
    "label": f"{DRIFT_ROOT}/{{drift}}/{{level}}/labelsTr/{{vol}}.nii.gz",
}
DRIFT_SET = f"{DRIFT_ROOT}/{{drift}}/{{level}}/dataset.json"
DRIFT_ENTRY = f"{RESULTS}/drift_entries/{{drift}}/{{level}}/{{vol}}.json"
#: The manifest entry of a set-level drift (prevalence: chosen clean volumes, no files).
DRIFT_SET_ENTRY = f"{RESULTS}/drift_entries/{{drift}}/{{level}}/set.json"
DRIFT_MANIFEST = f"{RESULTS}/drift_manifest.json"

#: One valid volume and its mask as OME-Zarr 0.5 (a folder), and what the export did.
OMEZARR = f"{OMEZARR_ROOT}/{{vol}}.ome.zarr"
OMEZARR_RECORD = f"{OMEZARR_ROOT}/{{vol}}.json"

REPORT_MIPS = f"{REPORT_ROOT}/mip"
REPORT_GALLERY = f"{REPORT_ROOT}/drift_gallery.png"
REPORT_DATASET = f"{REPORT_ROOT}/dataset.png"
REPORT_TABLE = f"{REPORT_ROOT}/validation.html"

#: The renamed tree against the authors' DVC snapshot (full real builds; fingerprint.py).
FINGERPRINT = f"{RESULTS}/fingerprint.json"

CHECK_SMOKE = f"{RESULTS}/check/smoke_metrics.json"
CHECK_MODEL = f"{RESULTS}/check/smoke_model.pt"

DRIFT_EVAL_ROOT = f"{RESULTS}/drift_eval"
DRIFT_EVAL = f"{DRIFT_EVAL_ROOT}/drift_eval.json"
DRIFT_EVAL_FEATURES = f"{DRIFT_EVAL_ROOT}/features.parquet"
DRIFT_EVAL_POWER_PNG = f"{DRIFT_EVAL_ROOT}/power_curves.png"
DRIFT_EVAL_FPR_PNG = f"{DRIFT_EVAL_ROOT}/false_alarms.png"
DRIFT_EVAL_DIFFICULTY_PNG = f"{DRIFT_EVAL_ROOT}/difficulty.png"
#: the reference segmenters (drift_eval_reference): UNet weights, their record, the
#: content-addressed cache that lets a rebuilt bundle with the same training data skip training
DRIFT_EVAL_REFERENCE_WEIGHTS = f"{DRIFT_EVAL_ROOT}/reference/unet.pt"
DRIFT_EVAL_REFERENCE_RECORD = f"{DRIFT_EVAL_ROOT}/reference/reference.json"
DRIFT_EVAL_REFERENCE_CACHE = f"{DRIFT_EVAL_ROOT}/reference/cache"
#: the label-only kinds' own harm (fine-tuning on drifted masks), reported apart
DRIFT_EVAL_LABEL_HARM = f"{DRIFT_EVAL_ROOT}/label_harm.json"
NNUNET_ROOT = f"{RESULTS}/nnunet"
#: The nnU-Net export of the check target (its dataset.json).
NNUNET_DATASET = f"{NNUNET_ROOT}/{NNUNET_NAME}/dataset.json"


def fill(template: str | dict[str, str], **wildcards: object) -> str | dict[str, str]:
    """A template (or a dict of templates) with its wildcards filled; volume ids are checked."""
    if "vol" in wildcards:
        check_volume_id(str(wildcards["vol"]))
    if isinstance(template, dict):
        return {role: path.format(**wildcards) for role, path in template.items()}
    return template.format(**wildcards)


def renamed(vol: str) -> dict[str, str]:
    """One volume's renamed files (image, label, metadata)."""
    return fill(RENAMED, vol=vol)


def processed(vol: str) -> dict[str, str]:
    """One valid volume's processed files (image, label, metadata)."""
    return fill(PROCESSED, vol=vol)


def drift_variant(drift: str, level: int | str, vol: str) -> dict[str, str]:
    """One drift variant's files (image, label)."""
    return fill(DRIFT_VARIANT, drift=drift, level=level, vol=vol)


def licence(name: str) -> str:
    """Where the licence file lives: beside the renamed metadata."""
    return f"{RENAMED_ROOT}/metadata/{name}"


def bundle_files(version: str) -> dict[str, str]:
    """The bundle stage's outputs for a bundle version: bag folder, archive and metadata."""
    name = f"{BAG_PREFIX}{version}"
    bag = f"{BUNDLE_ROOT}/{name}"
    return {
        "name": name,
        "bag": bag,
        "bag_manifest": f"{bag}/manifest-sha256.txt",
        "bag_tagmanifest": f"{bag}/tagmanifest-sha256.txt",
        "dvc": f"{bag}.dvc",
        "archive": f"{bag}.tar",
        "sha256": f"{bag}.tar.sha256",
        "summary": f"{bag}.json",
        "verified": f"{bag}.verified.txt",
    }


def hf_folder(version: str) -> str:
    """The Hugging Face export of the bundle version (``snakemake hf``; hf.py)."""
    return f"{HF_ROOT}/minivess-{version}"
