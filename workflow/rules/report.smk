"""Report: figures for `snakemake --report report.html` (vessels to look at: MIPs before and
after resampling, drawn once every volume is resampled, beside the drift jobs; a drift
gallery, dataset plots, the validation table after drift)."""


report: "../report/workflow.rst"


rule report_mips:
    """Draw every volume's MIP before and after resampling as soon as the last volume is
    resampled (beside the drift jobs, not after them; one matplotlib start-up)."""
    input:
        unpack(report_mip_inputs),
        validation_report=layout.VALIDATION_REPORT,
    output:
        mips=report(
            directory(layout.REPORT_MIPS),
            patterns=["{name}.png"],
            category="Volumes",
            subcategory="MIP before / after resampling",
            caption="../report/mips.rst",
            labels={"volume": "{name}"},
        ),
    log:
        "logs/report/mips.log",
    benchmark:
        "benchmarks/report_mips/report_mips.tsv"
    priority: 1  # before waiting drift jobs: off the serial tail
    conda:
        ENV
    # One thread: it then takes the first core a drift job frees (priority 1) instead of
    # waiting for two free cores, which on 2 cores came only after the last drift job (14 s
    # of the serial tail at 70 volumes). More with --set-threads report_mips=N.
    threads: 1
    resources:
        mem_mb=report_mips_mem_mb,
        runtime=30,
    params:
        before=section_root(layout.RENAMED_ROOT),
        after=section_root(layout.PROCESSED_ROOT),
    shell:
        "minivess-bundle report-mips --validation-report {input.validation_report:q} "
        "--before {params.before:q} --after {params.after:q} --mip-dir {output.mips:q} "
        "--threads {threads} > {log:q} 2>&1"


rule report_figures:
    """Draw the drift gallery, the dataset plots and the validation table (one matplotlib
    start-up); the MIPs are report_mips'."""
    input:
        unpack(report_inputs),
        validation_report=layout.VALIDATION_REPORT,
    output:
        gallery=report(
            layout.REPORT_GALLERY,
            category="Drift variants",
            caption="../report/gallery.rst",
            labels={"figure": "gallery"},
        ),
        dataset=report(
            layout.REPORT_DATASET,
            category="Dataset",
            caption="../report/dataset.rst",
            labels={"figure": "overview"},
        ),
        table=report(
            layout.REPORT_TABLE,
            category="Validation",
            caption="../report/validation.rst",
            labels={"table": "checks"},
        ),
    log:
        "logs/report/figures.log",
    benchmark:
        "benchmarks/report_figures/report_figures.tsv"
    group:
        resources.GROUP_TAIL
    conda:
        ENV
    resources:
        mem_mb=fixed_mem_mb(2048),
        runtime=30,
    params:
        after=section_root(layout.PROCESSED_ROOT),
        drift=section_root(layout.DRIFT_ROOT),
        drift_manifest=report_drift_manifest,
    shell:
        "minivess-bundle report-figures --validation-report {input.validation_report:q} "
        "--after {params.after:q} --drift {params.drift:q} "
        "--drift-manifest={params.drift_manifest:q} "
        "--gallery-png {output.gallery:q} --dataset-png {output.dataset:q} "
        "--table-html {output.table:q} > {log:q} 2>&1"
