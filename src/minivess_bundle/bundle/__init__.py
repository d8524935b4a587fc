"""Assemble the release bundle: a BagIt 1.0 bag (RFC 8493) that describes itself.

One concern per module: :mod:`.bagit` (names, manifests, tag files), :mod:`.describe`
(dataset.json, provenance, licence, bag-info), :mod:`.datasheet` (README.md),
:mod:`.rocrate` (ro-crate-metadata.json), :mod:`.assemble` (placing and writing it all);
croissant.json comes from :mod:`minivess_bundle.bundle.croissant`, and what a release holds
from :mod:`minivess_bundle.bundle.release`.

:func:`assemble_bundle` builds ``<out_dir>/minivess-<version>/``::

    bagit.txt  bag-info.txt  manifest-sha256.txt  manifest-sha512.txt
    tagmanifest-sha256.txt  tagmanifest-sha512.txt
    data/
      raw/         renamed originals (imagesTr/labelsTr/metadata), bytes untouched
      processed/   validated + resampled imagesTr/labelsTr/metadata
      drift/       drift variants
      quarantine/  only when asked: quarantined volumes' renamed files (reasons in
                   quarantine.json, which is always written)
      dataset.json               nnU-Net v2 keys + MSD-style ``training`` list
      quarantine.json            volumes left out, with reasons
      <documents>                e.g. validation_report.json, drift_manifest.json
      provenance.json            versions, config, locked packages, per-file lineage
      ro-crate-metadata.json     RO-Crate 1.3, one CreateAction per stage
      croissant.json             Croissant 1.1 with RAI fields, sha256s, record sets
      LICENCE.txt  README.md     attribution and the datasheet

Every section is optional (``None`` leaves it out). Files of the sections and the
documents are copied with :func:`~minivess_bundle.core.fsio.copy_hashed` (one read of
each input feeds the copy and its sha256, sha512 and md5; extents shared by
reflink on a copy-on-write file system; hardlinks on request), several files at
a time (``threads``), so their bytes are the inputs' bytes. The bag is built in
a hidden sibling folder and renamed into place, so a failed build never leaves a
half bag at the final path.

Determinism: the outputs depend only on the inputs' bytes, the arguments and
``SOURCE_DATE_EPOCH`` (Bagging-Date, datePublished) — never on wall-clock time,
the host, the user, the working directory or where the inputs live: absolute
paths found in the config become ``<local>/<name>``, and a final scan refuses
the bundle if any text file in it names an input or output folder or the home
folder. JSON is canonical (:func:`~minivess_bundle.core.fsio.json_bytes`); manifests
are sorted by path with LF line ends.

The folder name has no dot other than the version's: MONAI's
``download_and_extract`` keys its "already extracted" check on the archive name
up to the first dot (see :mod:`minivess_bundle.bundle.archive`).
"""

from __future__ import annotations

from .assemble import assemble_bundle
from .bagit import (
    ALGORITHMS,
    BAG_PREFIX,
    BAGIT_TXT,
    COMPUTED_LABELS,
    GENERATED,
    LABEL_RE,
    SECTIONS,
    VERSION_RE,
    bag_info_bytes,
    bag_name,
    bagging_date,
    check_bag_path,
    file_digests,
    manifest_bytes,
    parse_bag_info,
    parse_manifest,
    write_bag_files,
)
from .datasheet import datasheet
from .describe import (
    CITATION,
    DATASET,
    DOI_URL,
    EBRAINS_URL,
    HEADER_UNITS,
    LABELS,
    UNIT_NAMES,
    UNITS_NOTE,
    dataset_description,
    licence_text,
    provenance_record,
    read_header,
    read_lock_file,
    redact_paths,
)
from .rocrate import (
    AGENT_ID,
    NIFTI_FORMAT,
    PROCESS_RUN_PROFILE,
    RO_CRATE_PROFILE,
    SOFTWARE_URL,
    ro_crate,
)

__all__ = [
    "AGENT_ID",
    "ALGORITHMS",
    "BAGIT_TXT",
    "BAG_PREFIX",
    "CITATION",
    "COMPUTED_LABELS",
    "DATASET",
    "DOI_URL",
    "EBRAINS_URL",
    "GENERATED",
    "HEADER_UNITS",
    "LABELS",
    "LABEL_RE",
    "NIFTI_FORMAT",
    "PROCESS_RUN_PROFILE",
    "RO_CRATE_PROFILE",
    "SECTIONS",
    "SOFTWARE_URL",
    "UNITS_NOTE",
    "UNIT_NAMES",
    "VERSION_RE",
    "assemble_bundle",
    "bag_info_bytes",
    "bag_name",
    "bagging_date",
    "check_bag_path",
    "dataset_description",
    "datasheet",
    "file_digests",
    "licence_text",
    "manifest_bytes",
    "parse_bag_info",
    "parse_manifest",
    "provenance_record",
    "read_header",
    "read_lock_file",
    "redact_paths",
    "ro_crate",
    "write_bag_files",
]
