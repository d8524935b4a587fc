"""Bundle: a BagIt bag (sha256 + sha512 manifests) with dataset.json, provenance,
RO-Crate and a datasheet; DVC metadata beside it; a deterministic tar (bundle.archive);
then an independent verification of what was written."""


rule bundle:
    """Assemble the bag from exactly the declared inputs, archive it, print the digest."""
    input:
        unpack(bundle_inputs),
        validation_report=layout.VALIDATION_REPORT,
        lock=LOCK,
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
    # Before report_figures, which is ready at the same moment (after the last drift job):
    # the bundle hashes on two threads, then verify_bundle runs beside report_figures. The
    # other order (the greedy scheduler's, report_figures first) left the bundle waiting
    # for a second free core: 27 s of serial tail instead of 21 at 70 volumes on 2 cores.
    priority: 1
    group:
        resources.GROUP_TAIL
    conda:
        ENV
    # files copied and hashed at once: 2, so a SLURM node with 2 CPUs can run it (4 asked for
    # cpus_per_task=4 and never started on one); more with --set-threads bundle=N
    threads: 2
    resources:
        mem_mb=fixed_mem_mb(1024),
        runtime=120,
    params:
        spec=bundle_spec,
    shell:
        "minivess-bundle bundle --spec {params.spec:q} --lock {input.lock:q} "
        "--threads {threads} > {log:q} 2>&1"


rule verify_bundle:
    """Verify the bag (and the archive) independently of how they were made, every file of
    it; reruns when the bundle is rebuilt (its manifests are the inputs)."""
    input:
        verify_inputs,
    output:
        BUNDLE["verified"],
    log:
        "logs/bundle/verify.log",
    benchmark:
        "benchmarks/verify_bundle/verify_bundle.tsv"
    group:
        resources.GROUP_TAIL
    conda:
        ENV
    # One thread: after the bundle, verify (8 s of CPU at 70 volumes) and report_figures run
    # side by side on 2 cores instead of one after the other. More with --set-threads.
    threads: 1
    resources:
        mem_mb=fixed_mem_mb(512),
        runtime=60,
    params:
        paths=VERIFY_PATHS,
    shell:
        "minivess-bundle verify {params.paths:q} --threads {threads} --out {output:q} "
        "> {log:q} 2>&1"
