"""Shared helpers of the workflow: config validation, volume list, input functions
and resource estimators. Imports only the package's light modules (pure Python),
so building the DAG stays fast even at 70 volumes."""

import functools
import json
import os
import posixpath
import subprocess
import re
import sys
import warnings
from urllib.parse import urlsplit
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
# Snakemake leaves a coroutine of its own un-awaited when a resource function reads
# input sizes before the input exists (rules.py, TBDString): a warning a user cannot act on.
warnings.filterwarnings(
    "ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning
)

from minivess_bundle import resources  # noqa: E402
from minivess_bundle.core import layout  # noqa: E402
from minivess_bundle.settings import validated as validated_config  # noqa: E402
from minivess_bundle.bundle.release import release_spec  # noqa: E402
from minivess_bundle.resample import ResampleSpec  # noqa: E402
from minivess_bundle.fetch.spec import (
    DownloadSpec,
    EbrainsSpec,
    FetchSpec,
)  # noqa: E402
from minivess_bundle.validate.spec import ValidateSpec  # noqa: E402
from minivess_bundle.drift.spec import DriftSpec  # noqa: E402
from minivess_bundle.drift_eval.spec import (
    DriftEvalSpec,
    LabelHarmSpec,
    ReferenceSpec,
)  # noqa: E402
from minivess_bundle.core.spec import to_json as spec_json  # noqa: E402
from minivess_bundle.core.layout import renamed, processed  # noqa: E402
from minivess_bundle.fetch.fingerprint import (
    applies as fingerprint_applies,
)  # noqa: E402
from minivess_bundle.drift.kinds import KINDS  # noqa: E402
from minivess_bundle.drift.plan import (  # noqa: E402
    LEVELLED_KINDS,
    drift_levels,
    drift_volumes as plan_drift_volumes,
    plan_groups,
    plan_sets,
    skipped_jobs,
    skipped_sets,
    volume_facts,
    reference_volumes,
)
from minivess_bundle.core.volumes import (  # noqa: E402
    EBRAINS_LICENCE,
    SYNTHETIC_LICENCE,
    VOLUME_PATTERN,
    resolve_volumes,
    staging_names,
)

# The package checks the config first (typed, defaults from its schema, one line per
# problem, source paths by their config key), before any job is planned.
config.update(validated_config(config, files=workflow.configfiles))

VOLUMES = resolve_volumes(config["volumes"])
SOURCE = config["source"]
LICENCE = SYNTHETIC_LICENCE if SOURCE == "synthetic" else EBRAINS_LICENCE
CONTAINER = config["container_image"]
ENV = "../../envs/minivess.yaml"


wildcard_constraints:
    vol=VOLUME_PATTERN,
    drift="|".join(KINDS),
    level=r"\d",


ZIP_URL = config["zip"]["url"]


def downloaded_zip():
    """Where the ZIP given by zip.url lands (its file name from the URL)."""
    name = posixpath.basename(urlsplit(ZIP_URL).path)
    if not re.fullmatch(r"[A-Za-z0-9._-]+\.zip", name):
        raise ValueError(
            f"config: zip.url must end in a plain *.zip file name, got {name!r}"
        )
    return f"{layout.DOWNLOADS_ROOT}/{name}"


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
    """The source files a fetch job reads, so that a changed source re-fetches: the ZIP
    itself, or the volume's three files in the dir source (those that exist: a missing
    one is reported by the job itself, naming it)."""
    if SOURCE == "zip":
        return {"archive": source_path()}
    if SOURCE == "dir" and hasattr(wildcards, "vol"):
        files = {
            role: os.path.join(source_path(), name)
            for role, name in staging_names(wildcards.vol).items()
        }
        return {role: path for role, path in files.items() if os.path.isfile(path)}
    if SOURCE == "dir":
        licence = os.path.join(source_path(), EBRAINS_LICENCE)
        return {"licence": licence} if os.path.isfile(licence) else {}
    return {}


def fetch_mem_mb(wildcards, attempt):
    """Memory of one fetch job: synthetic generation holds ~40 bytes per voxel
    (mask, float image, noise); zip/dir stream in 1 MiB chunks."""
    if SOURCE != "synthetic":
        return resources.for_attempt(256, attempt)
    size = config["synthetic"]
    return resources.synthetic_mem_mb(size["size_xy"], size["max_z"], attempt)


# Each stage's one spec (core.spec: its config parameters as JSON), the same for every job
# of the stage; what differs per job (volume, files, levels) goes on the command line.
FETCH_SPEC = spec_json(FetchSpec.from_config(config))
EBRAINS_SPEC = spec_json(EbrainsSpec.from_config(config))
DOWNLOAD_SPEC = spec_json(DownloadSpec.from_config(config))
VALIDATE_SPEC = spec_json(ValidateSpec.from_config(config))
RESAMPLE_SPEC = spec_json(ResampleSpec.from_config(config))
DRIFT_SPEC = spec_json(DriftSpec.from_config(config))
DRIFT_EVAL_REFERENCE_SPEC = spec_json(ReferenceSpec.from_config(config))
DRIFT_EVAL_SPEC = spec_json(DriftEvalSpec.from_config(config))
DRIFT_EVAL_LABEL_HARM_SPEC = spec_json(LabelHarmSpec.from_config(config))


def fixed_mem_mb(mem_mb):
    """A resource function: ``mem_mb`` on the first attempt, more on each retry."""
    return lambda wildcards, attempt: resources.for_attempt(mem_mb, attempt)


def _submission_group(stage, vol):
    """The group of ``vol``'s ``stage`` jobs (resources.submission_group), registered under
    ``stage`` the way Snakemake registers a group with wildcards, so that profiles/slurm's
    ``group-components: [process=N]`` joins the chains of one group (its volumes') into
    one submission. Groups are inactive in a local run."""
    group = resources.submission_group(stage, vol, VOLUMES)
    workflow.parent_groupids[group] = stage
    return group


def process_group(wildcards):
    """SLURM: one submission runs resample -> drift of a few volumes (fetch -> rename ->
    validate are localrules: on the submit host, before the validation checkpoint)."""
    return _submission_group(resources.GROUP_PROCESS, wildcards.vol)


def validate_mem_mb(wildcards, input, attempt):
    """Validation holds image and mask (plus float statistics): from the header, for at
    most the voxels the file can hold (an untrusted header cannot inflate it)."""
    return resources.per_voxel_mem_mb("validate", input.image, attempt)


def resample_mem_mb(wildcards, input, threads, attempt):
    """Peak memory of one resample job, estimated from the image header (clamped), for
    the image interpolator and the job's threads."""
    return resources.resample_mem_mb(
        input.image,
        config["resample"]["target_spacing_um"],
        config["validate"]["source_units"],
        attempt,
        interpolator=config["resample"]["image_interpolator"],
        threads=threads,
    )


@functools.lru_cache(maxsize=4)
def _valid_in(report_path, mtime_ns):
    with open(report_path) as handle:
        return tuple(json.load(handle)["valid"])


def valid_volumes():
    """Volumes the validation report lets through (evaluated after the checkpoint; read
    once per version of the report, however many input functions ask)."""
    report_path = checkpoints.validation_report.get().output[0]
    return list(_valid_in(report_path, os.stat(report_path).st_mtime_ns))


def processed_outputs(wildcards):
    """Processed files of every valid volume (quarantined ones are left out)."""
    return [path for vol in valid_volumes() for path in processed(vol).values()]


DRIFT = config["drift"]
DRIFT_LEVELS = drift_levels(DRIFT)


def drift_volumes():
    """Held-out volumes the drift variants are made of (after validation)."""
    return plan_drift_volumes(valid_volumes(), DRIFT)


@functools.lru_cache(maxsize=4)
def _facts_in(report_path, mtime_ns):
    with open(report_path) as handle:
        volumes = json.load(handle)["volumes"]
    target = config["resample"]["target_spacing_um"]
    return {vol: volume_facts(entry, target) for vol, entry in volumes.items()}


def drift_facts():
    """Shape and vessel voxels of each volume after resampling, from the validation
    report (drift.plan.volume_facts): the plan skips a kind where it cannot act."""
    report_path = checkpoints.validation_report.get().output[0]
    return _facts_in(report_path, os.stat(report_path).st_mtime_ns)


def drift_groups():
    """The plan's jobs: (volume, kind, levels, params) groups (drift.plan.plan_groups)."""
    return plan_groups(valid_volumes(), DRIFT, drift_facts())


def drift_jobs():
    """(volume, kind, level) of every variant (the groups' levels)."""
    return [
        (group.volume, group.kind, level)
        for group in drift_groups()
        for level in group.levels
    ]


def drift_set_jobs():
    """(kind, level) of every set-level drift (drift.plan.plan_sets: prevalence)."""
    return [(job.kind, job.level) for job in plan_sets(valid_volumes(), DRIFT)]


def drift_skipped(wildcards):
    """Requested kinds the plan cannot make, with why (JSON; recorded in the manifest)."""
    skipped = skipped_sets(valid_volumes(), DRIFT)
    skipped += skipped_jobs(valid_volumes(), DRIFT, drift_facts())
    return json.dumps(skipped, sort_keys=True)


def has_drift():
    """Whether any variant or set-level drift is planned (a prevalence-only config too)."""
    return bool(drift_jobs() or drift_set_jobs())


def drift_set_param(key):
    """One parameter of the set-level jobs (pool: every valid volume; set_size)."""

    def param(wildcards):
        jobs = plan_sets(valid_volumes(), DRIFT)
        return jobs[0].params[key] if jobs else ""

    return param


def drift_pool_files(wildcards):
    """The processed pair of every valid volume: the clean volumes a set chooses from."""
    return [
        layout.processed(vol)[role]
        for vol in valid_volumes()
        for role in ("image", "label")
    ]


def drift_params(wildcards):
    """Explicit parameters of one drift job as JSON (gradual: base kind and batches)."""
    for group in drift_groups():
        if group.kind == wildcards.drift and group.params:
            return json.dumps(group.params, sort_keys=True)
    return ""


def drift_reference_ids(wildcards):
    """Valid volumes left clean: the reference split a detector compares against."""
    return reference_volumes(valid_volumes(), DRIFT)


def drift_level_outputs(template):
    """``template`` at every configured level ({drift} and {vol} kept): the files of one
    (volume, kind) job of the drift rule."""
    return expand(template, level=DRIFT_LEVELS, allow_missing=True)


def drift_mem_mb(wildcards, input, attempt):
    """A drift job holds the clean image and mask, float temporaries and one level's output
    at a time (resources.drift_mem_mb, per kind): from the header (clamped)."""
    return resources.drift_mem_mb(wildcards.drift, input.image, attempt)


def drift_entries(wildcards):
    """Every variant's and every set's manifest entry."""
    return [
        *(
            layout.fill(layout.DRIFT_ENTRY, drift=kind, level=level, vol=vol)
            for vol, kind, level in drift_jobs()
        ),
        *(
            layout.fill(layout.DRIFT_SET_ENTRY, drift=kind, level=level)
            for kind, level in drift_set_jobs()
        ),
    ]


def drift_set_entries(wildcards):
    """The manifest entries of one kind's variants: at every level (drift_set), or at
    the job's level (drift_set_gradual: one batch)."""
    level = getattr(wildcards, "level", None)
    return [
        layout.fill(layout.DRIFT_ENTRY, drift=kind, level=lvl, vol=vol)
        for vol, kind, lvl in drift_jobs()
        if kind == wildcards.drift and (level is None or str(lvl) == level)
    ]


def drift_outputs(wildcards):
    """Every drift file, set dataset.json and the manifest (nothing when disabled)."""
    jobs = drift_jobs()
    if not has_drift():
        return []
    sets = sorted({(kind, level) for _, kind, level in jobs} | set(drift_set_jobs()))
    return [
        layout.DRIFT_MANIFEST,
        *(
            layout.fill(layout.DRIFT_SET, drift=kind, level=level)
            for kind, level in sets
        ),
        *(
            path
            for vol, kind, level in jobs
            for path in layout.drift_variant(kind, level, vol).values()
        ),
    ]


BUNDLE = layout.bundle_files(config["bundle"]["version"])
ARCHIVE = config["bundle"]["archive"]
#: The tar and its checksum: bundle outputs only with bundle.archive.
BUNDLE_ARCHIVE = {key: BUNDLE[key] for key in ("archive", "sha256")} if ARCHIVE else {}
#: What verify_bundle checks: the bag folder, then the archive (bundle.archive).
VERIFY_PATHS = [BUNDLE["bag"], *([BUNDLE["archive"]] if ARCHIVE else [])]


# The workflow's own folder (two above this file's), also when it is deployed as a module
# (snakedeploy): workflow.basedir is then the deployment's. A remote module has no folder here
# (a URL): git fails and the commit is "".
WORKFLOW_DIR = os.path.dirname(os.path.dirname(str(workflow.current_basedir)))


def git_commit():
    """The workflow's commit: MINIVESS_GIT_COMMIT (set in the container), else git, else ""."""
    baked = os.environ.get("MINIVESS_GIT_COMMIT", "")
    if baked:
        return baked
    try:
        return subprocess.run(
            ["git", "-C", WORKFLOW_DIR, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


GIT_COMMIT = git_commit()


def quarantined_volumes():
    """Volumes the validation report left out (evaluated after the checkpoint)."""
    valid = set(valid_volumes())
    return [vol for vol in VOLUMES if vol not in valid]


def bundle_inputs(wildcards):
    """Every file the bag is made of, per section: the release holds exactly these
    (valid volumes only; quarantined ones under quarantine/ when bundle.quarantined
    is include; drift when enabled)."""
    bundle = config["bundle"]
    valid = valid_volumes()
    inputs = {"raw": [], "processed": [], "records": [], "drift": [], "quarantine": []}
    if bundle["raw"]:
        inputs["raw"] = [
            layout.licence(LICENCE),
            *(path for vol in valid for path in renamed(vol).values()),
        ]
    if bundle["processed"]:
        inputs["processed"] = processed_outputs(wildcards)
        inputs["records"] = [
            layout.fill(layout.RESAMPLE_RECORD, vol=vol) for vol in valid
        ]
    if bundle["drift"] and has_drift():
        inputs["drift"] = [
            p for p in drift_outputs(wildcards) if p != layout.DRIFT_MANIFEST
        ]
        inputs["drift_manifest"] = layout.DRIFT_MANIFEST
    if bundle["quarantined"] == "include":
        inputs["quarantine"] = [
            path for vol in quarantined_volumes() for path in renamed(vol).values()
        ]
    if SOURCE == "ebrains":
        inputs["listing"] = layout.EBRAINS_LISTING
    if FINGERPRINT:
        inputs["fingerprint"] = layout.FINGERPRINT
    return inputs


def section_root(root):
    """A params function: the folder a section's declared files are relative to."""
    return lambda wildcards: root


# The lock the bundle records: an input (source_path: a cached copy whose path changes from
# run to run, so it goes on the command line, not into the tracked spec).
LOCK = workflow.source_path("../../requirements/lock.txt")


def bundle_spec(wildcards):
    """The bundle stage's one spec (release.release_spec: config + declared files), JSON.
    A function of the wildcards alone: Snakemake compares a params function's value with the
    last run's, and reruns the job when it changed, only for such functions (not for those
    taking input, output or threads), so a config change rebuilds the bag. The job's threads
    and the lock's path go on the command line."""
    spec = release_spec(
        config,
        bundle_inputs(wildcards),
        out_dir=str(Path(BUNDLE["summary"]).parent),
        summary=BUNDLE["summary"],
        validation_report=layout.VALIDATION_REPORT,
        git_commit=GIT_COMMIT,
    )
    return spec_json(spec)


def verify_inputs(wildcards):
    """The archive and its checksum (bundle.archive), the bag's two manifests and the DVC
    file: the payload manifest pins every payload byte and the tag manifest every tag file,
    so a rebuilt bag is verified again. Declared outputs of the bundle, not the bag's files
    listed after it ran: ``bundle`` is a plain rule, and bundle -> verify_bundle one SLURM
    submission (resources.GROUP_TAIL). The verification reads every file of the bag."""
    return [
        *BUNDLE_ARCHIVE.values(),
        BUNDLE["bag_manifest"],
        BUNDLE["bag_tagmanifest"],
        BUNDLE["dvc"],
    ]


def report_drift_manifest(wildcards):
    """The drift manifest when there are variants to show (set-level drift alone has
    none: prevalence changes no voxel), else ""."""
    return layout.DRIFT_MANIFEST if drift_jobs() else ""


def report_inputs(wildcards):
    """What the gallery is drawn from: the drift variants and their clean volumes."""
    inputs = {"processed": processed_outputs(wildcards)}
    if drift_jobs():
        inputs["drift"] = drift_outputs(wildcards)
    return inputs


def report_mip_inputs(wildcards):
    """What the MIPs are drawn from: every valid volume before and after resampling."""
    return {
        "renamed": [path for vol in valid_volumes() for path in renamed(vol).values()],
        "processed": processed_outputs(wildcards),
    }


def report_mips_mem_mb(wildcards, input, threads, attempt):
    """Each of the MIP job's workers holds one volume (and its mask) at a time: the
    largest, from its header, per worker."""
    root = f"{layout.PROCESSED_ROOT}/imagesTr/"  # (none listed yet in a dry run)
    images = [str(path) for path in input if str(path).startswith(root)]
    return resources.report_mips_mem_mb(images, attempt, threads)


def omezarr_mem_mb(wildcards, input, attempt):
    """An OME-Zarr export holds the volume, its copies and the pyramid: from the header."""
    return resources.per_voxel_mem_mb("omezarr", input.image, attempt)


def omezarr_outputs(wildcards):
    """The OME-Zarr folder and record of every valid volume (nothing when switched off)."""
    if not config["ome_zarr"]["enabled"]:
        return []
    return [
        layout.fill(template, vol=vol)
        for vol in valid_volumes()
        for template in (layout.OMEZARR, layout.OMEZARR_RECORD)
    ]


#: The authors' fingerprint is checked when the build copies the release's bytes: a real
#: source and all 70 volumes (rule fingerprint; its record goes into the bag's provenance).
FINGERPRINT = fingerprint_applies(SOURCE, VOLUMES)
FINGERPRINT_OUTPUTS = [layout.FINGERPRINT] if FINGERPRINT else []


def print_fingerprint():
    """Say on the console whether the renamed tree equals the authors' snapshot."""
    record = Path(layout.FINGERPRINT)
    if FINGERPRINT and record.is_file():
        check = json.loads(record.read_text())
        verdict = "" if check["matches"] else "WARNING: "
        print(f"minivess-bundle: {verdict}{check['message']}")


def all_outputs():
    """Final targets of `all`, growing with the stages."""
    return [
        layout.licence(LICENCE),
        layout.INVENTORY,
        layout.VALIDATION_REPORT,
        processed_outputs,
        drift_outputs,
        BUNDLE["verified"],
        layout.REPORT_DATASET,
        layout.REPORT_MIPS,
        omezarr_outputs,
        FINGERPRINT_OUTPUTS,
    ]


def print_bundle_digest():
    """Say where the bundle is and its digest (at the end of a successful run)."""
    summary = Path(BUNDLE["summary"])
    if summary.is_file():
        data = json.loads(summary.read_text())
        if data["archive"]:
            what = f"{data['archive']} sha256 {data['sha256']}"
        else:  # no tar (bundle.archive: false): the manifest pins every payload byte
            what = f"{data['bag']} manifest-sha256.txt sha256 {data['manifest_digest']}"
        print(
            f"minivess-bundle: {layout.BUNDLE_ROOT}/{what} "
            f"({data['volumes']} volumes, {data['files']} files, "
            f"{len(data['quarantined'])} quarantined)"
        )
