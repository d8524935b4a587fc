"""Resample: every valid volume onto the target grid (isotropic 1 um by default), in
z-slabs streamed to deterministic gzip so memory stays bounded; its json carried over in
the same job, bytes untouched."""


rule resample:
    """Resample one validated volume pair onto the target grid; carry its json over."""
    input:
        **layout.RENAMED,
        report=layout.VALIDATION,
    output:
        **layout.PROCESSED,
        record=layout.RESAMPLE_RECORD,
    log:
        "logs/resample/{vol}.log",
    benchmark:
        "benchmarks/resample/{vol}.tsv"
    # Every volume is resampled before any drift job starts (drift has priority 0), so the
    # MIPs (report_mips, priority 1: they need every resampled volume) draw beside the drift
    # jobs instead of after them: at 70 volumes on 2 cores the last resample had waited for
    # drift jobs until 131 s of 177, and the MIPs then held up the bundle.
    priority: 2
    group:
        process_group
    conda:
        ENV
    # One thread: on 2 cores two resample jobs then run side by side. Measured on an
    # mv68-size job (bench/resample_speed.py), CPU s: start-up 0.25, decode 0.25,
    # interpolation 0.62, encode 0.51 — a thread pool (--set-threads resample=N) only
    # spreads the interpolation, so two 2-thread jobs in turn take longer than two
    # 1-thread jobs side by side; more threads help where cores outnumber jobs.
    threads: 1
    resources:
        mem_mb=resample_mem_mb,
        runtime=60,
    params:
        spec=RESAMPLE_SPEC,
    shell:
        "minivess-bundle resample {wildcards.vol} --spec {params.spec:q} "
        "--image {input.image:q} --label {input.label:q} --threads {threads} "
        "--metadata {input.metadata:q} "
        "--out-image {output.image:q} --out-label {output.label:q} "
        "--out-metadata {output.metadata:q} --record {output.record:q} > {log:q} 2>&1"
