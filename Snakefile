"""minivess-bundle: the MiniVess dataset as a verified, reproducible bundle.

Stages, one file each under workflow/rules/: fetch -> rename -> (validate ->
resample -> drift -> bundle; omezarr, report, check). Run:  snakemake --cores 8 all
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


# The project image for every rule (config container_image; used under --sdm apptainer): one
# global directive, before the rules are defined, instead of one line per rule.
container: CONTAINER


include: "workflow/rules/fetch.smk"
include: "workflow/rules/rename.smk"
include: "workflow/rules/fingerprint.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/resample.smk"
include: "workflow/rules/drift.smk"
include: "workflow/rules/bundle.smk"
include: "workflow/rules/omezarr.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/check.smk"
include: "workflow/rules/drift_eval.smk"
include: "workflow/rules/hf.smk"


# Tiny jobs (merges of small JSON files, targets) run in the main process, and so do the
# fetches (workflow/rules/fetch.smk; each lands its volume renamed) and validate: on the
# submit host, which has the internet access compute nodes often lack, before the
# validation checkpoint. Under
# profiles/slurm only resample -> drift (a few volumes per submission: the rules' group:),
# report_mips, and the tail (bundle -> verify_bundle, report_figures) are submitted.
localrules:
    all,
    check,
    validate,
    renamed_inventory,
    fingerprint,
    validation_report,
    drift_set,
    drift_set_gradual,
    drift_select,
    drift_manifest,


onsuccess:
    print_fingerprint()
    print_bundle_digest()


rule all:
    """Everything the configured build produces (the first rule: the default target)."""
    input:
        all_outputs(),
