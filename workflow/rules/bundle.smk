"""Bundle: a BagIt bag (sha256 + sha512 manifests) with dataset.json, provenance,
RO-Crate and a datasheet; DVC metadata beside it; a deterministic tar (bundle.archive);
then an independent verification of what was written."""


checkpoint bundle:
    """Assemble the bag from exactly the declared inputs, archive it, print the digest."""
    input:
        unpack(bundle_inputs),
        validation_report=layout.VALIDATION_REPORT,
        fingerprint=FINGERPRINT_OUTPUTS,
        lock=workflow.source_path("../../requirements/lock.txt"),
    output:
        **BUNDLE_ARCHIVE,
        bag_manifest=BUNDLE["bag_manifest"],
        bag_tagmanifest=BUNDLE["bag_tagmanifest"],
        dvc=BUNDLE["dvc"],
        summary=BUNDLE["summary"],
    log:
        "logs/bundle/bundle.log",
    benchmark:
        "benchmarks/bundle/bundle.tsv"
    conda:
        ENV
    # files copied and hashed at once: 2, so a SLURM node with 2 CPUs can run it (4 asked for
    # cpus_per_task=4 and never started on one); more with --set-threads bundle=N
    threads: 2
    resources:
        mem_mb=fixed_mem_mb(1024),
        runtime=120,
    params:
        version=config["bundle"]["version"],
        out_dir=lambda wildcards, output: str(Path(output.summary).parent),
        archive="--archive" if ARCHIVE else "--no-archive",
        epoch=SOURCE_DATE_EPOCH,
        raw_root=section_root(layout.RENAMED_ROOT),
        processed_root=section_root(layout.PROCESSED_ROOT),
        drift_root=section_root(layout.DRIFT_ROOT),
        quarantine_root=section_root(layout.RENAMED_ROOT),
        quarantined=config["bundle"]["quarantined"],
        raw=bundle_section("raw"),
        processed=bundle_section("processed"),
        records=bundle_section("records"),
        drift=bundle_section("drift"),
        quarantine=bundle_section("quarantine"),
        drift_manifest=bundle_drift_manifest,
        listing=layout.EBRAINS_LISTING if SOURCE == "ebrains" else "",
        fingerprint=lambda wildcards, input: input.get("fingerprint", ""),
        git_commit=GIT_COMMIT,
        config_json=json.dumps(recorded_config(config), sort_keys=True),
        stages_json=STAGES_JSON,
    shell:
        "minivess-bundle bundle --bundle-version {params.version} "
        "--out-dir {params.out_dir:q} --source-date-epoch {params.epoch} "
        "--raw-root {params.raw_root:q} --raw {params.raw:q} "
        "--processed-root {params.processed_root:q} --processed {params.processed:q} "
        "--resample-records {params.records:q} "
        "--drift-root {params.drift_root:q} --drift {params.drift:q} "
        "--drift-manifest={params.drift_manifest:q} "
        "--quarantine-root {params.quarantine_root:q} --quarantine {params.quarantine:q} "
        "--quarantined {params.quarantined} "
        "--validation-report {input.validation_report:q} --listing={params.listing:q} "
        "--fingerprint={params.fingerprint:q} "
        "--lock {input.lock:q} --git-commit={params.git_commit:q} "
        "--config-json {params.config_json:q} --stages-json {params.stages_json:q} "
        "--summary {output.summary:q} {params.archive:q} --threads {threads} > {log:q} 2>&1"


rule verify_bundle:
    """Verify the bag (and the archive) independently of how they were made; reruns when
    any file of the bag changes, so an edited bundle is noticed."""
    input:
        verify_inputs,
    output:
        BUNDLE["verified"],
    log:
        "logs/bundle/verify.log",
    conda:
        ENV
    threads: 2  # hashing in parallel (capped by --cores)
    resources:
        mem_mb=fixed_mem_mb(512),
        runtime=60,
    params:
        paths=VERIFY_PATHS,
    shell:
        "minivess-bundle verify {params.paths:q} --threads {threads} --out {output:q} "
        "> {log:q} 2>&1"
