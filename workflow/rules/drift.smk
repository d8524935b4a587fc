"""Drift: controlled, verified distribution shifts of held-out resampled volumes, one
job per (volume, kind) writing every level (gradual: one per volume and batch), each
variant with its ground-truth manifest entry; each kind's sets' dataset.json in one job;
set-level kinds (prevalence) one job per level, choosing clean volumes."""


rule drift:
    """Make every configured level of one drift kind of one resampled volume (the clean
    pair decoded once) and record what was done, level by level."""
    input:
        image=layout.PROCESSED["image"],
        label=layout.PROCESSED["label"],
        # the checkpoint the reference split (params) is read from
        report=layout.VALIDATION_REPORT,
    output:
        image=drift_level_outputs(layout.DRIFT_VARIANT["image"]),
        label=drift_level_outputs(layout.DRIFT_VARIANT["label"]),
        entry=drift_level_outputs(layout.DRIFT_ENTRY),
    log:
        "logs/drift/{drift}/{vol}.log",
    benchmark:
        "benchmarks/drift/{drift}/{vol}.tsv"
    wildcard_constraints:
        drift="|".join(LEVELLED_KINDS),
    group:
        process_group
    conda:
        ENV
    resources:
        mem_mb=drift_mem_mb,
        runtime=30,
    params:
        spec=DRIFT_SPEC,
        drift_levels=DRIFT_LEVELS,
        drift_params=drift_params,
        reference_ids=drift_reference_ids,
        clean_root=lambda wildcards, input: str(Path(input.image).parents[1]),
        drift_root=lambda wildcards, output: str(Path(output.image[0]).parents[3]),
    shell:
        "minivess-bundle drift {wildcards.vol} --type {wildcards.drift} "
        "--drift-level {params.drift_levels} --image {input.image:q} --label {input.label:q} "
        "--spec {params.spec:q} --params={params.drift_params:q} "
        "--reference-ids {params.reference_ids} "
        "--clean-root {params.clean_root:q} --drift-root {params.drift_root:q} "
        "--out-image {output.image:q} "
        "--out-label {output.label:q} --entry {output.entry:q} > {log:q} 2>&1"


rule drift_gradual:
    """Make one volume's batch of gradual drift (its level is the batch: one per volume)."""
    input:
        image=layout.PROCESSED["image"],
        label=layout.PROCESSED["label"],
        report=layout.VALIDATION_REPORT,
    output:
        **layout.DRIFT_VARIANT,
        entry=layout.DRIFT_ENTRY,
    log:
        "logs/drift/{drift}/{level}/{vol}.log",
    benchmark:
        "benchmarks/drift/{drift}/{level}/{vol}.tsv"
    wildcard_constraints:
        drift="gradual",
    group:
        process_group
    conda:
        ENV
    resources:
        mem_mb=drift_mem_mb,
        runtime=30,
    params:
        spec=DRIFT_SPEC,
        drift_params=drift_params,
        reference_ids=drift_reference_ids,
        clean_root=lambda wildcards, input: str(Path(input.image).parents[1]),
        drift_root=lambda wildcards, output: str(Path(output.image).parents[3]),
    shell:
        "minivess-bundle drift {wildcards.vol} --type {wildcards.drift} "
        "--drift-level {wildcards.level} --image {input.image:q} --label {input.label:q} "
        "--spec {params.spec:q} --params={params.drift_params:q} "
        "--reference-ids {params.reference_ids} "
        "--clean-root {params.clean_root:q} --drift-root {params.drift_root:q} "
        "--out-image {output.image:q} "
        "--out-label {output.label:q} --entry {output.entry:q} > {log:q} 2>&1"


rule drift_set:
    """The dataset.json of each of one kind's variant sets (one per level), so each set
    loads on its own: one job per kind."""
    input:
        drift_set_entries,
    output:
        drift_level_outputs(layout.DRIFT_SET),
    log:
        "logs/drift/{drift}/datasets.log",
    wildcard_constraints:
        drift="|".join(LEVELLED_KINDS),
    conda:
        ENV
    resources:
        mem_mb=128,
        runtime=5,
    params:
        drift_levels=DRIFT_LEVELS,
    shell:
        "minivess-bundle drift-set {input:q} --type {wildcards.drift} "
        "--set-level {params.drift_levels} --out {output:q} > {log:q} 2>&1"


rule drift_set_gradual:
    """The dataset.json of one batch of gradual drift."""
    input:
        drift_set_entries,
    output:
        layout.DRIFT_SET,
    log:
        "logs/drift/{drift}/{level}/dataset.log",
    wildcard_constraints:
        drift="gradual",
    conda:
        ENV
    resources:
        mem_mb=128,
        runtime=5,
    shell:
        "minivess-bundle drift-set {input:q} --type {wildcards.drift} "
        "--set-level {wildcards.level} --out {output:q} > {log:q} 2>&1"


rule drift_select:
    """Choose one prevalence-shifted set of clean volumes by vessel fraction (no voxel
    changes): its dataset.json and manifest entry."""
    input:
        report=layout.VALIDATION_REPORT,
        pool=drift_pool_files,
    output:
        dataset=layout.DRIFT_SET,
        entry=layout.DRIFT_SET_ENTRY,
    log:
        "logs/drift/{drift}/{level}/select.log",
    benchmark:
        "benchmarks/drift/{drift}/{level}/select.tsv"
    wildcard_constraints:
        drift="prevalence",
    conda:
        ENV
    resources:
        mem_mb=256,
        runtime=5,
    params:
        spec=DRIFT_SPEC,
        pool=drift_set_param("pool"),
        set_size=drift_set_param("set_size"),
        reference_ids=drift_reference_ids,
        clean_root=lambda wildcards, input: str(Path(input.pool[0]).parents[1]),
    shell:
        "minivess-bundle drift-select --type {wildcards.drift} --drift-level {wildcards.level} "
        "--validation-report {input.report:q} --pool {params.pool:q} "
        "--set-size {params.set_size:q} --spec {params.spec:q} "
        "--reference-ids {params.reference_ids} --clean-root {params.clean_root:q} "
        "--out {output.dataset:q} --entry {output.entry:q} > {log:q} 2>&1"


rule drift_manifest:
    """Merge every variant's entry into the DriftManifest (schema-validated)."""
    input:
        drift_entries,
    output:
        layout.DRIFT_MANIFEST,
    log:
        "logs/drift/manifest.log",
    conda:
        ENV
    resources:
        mem_mb=256,
        runtime=5,
    params:
        skipped=drift_skipped,
    shell:
        "minivess-bundle drift-manifest {input:q} --out {output:q} "
        "--skipped {params.skipped:q} > {log:q} 2>&1"
