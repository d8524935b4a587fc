"""Report: figures for `snakemake --report report.html` (vessels to look at: MIPs before and
after resampling, one job per volume as soon as it is resampled; a drift gallery, dataset
plots, the validation table)."""


report: "../report/workflow.rst"


rule report_mip:
    """Draw one volume's MIP before and after resampling, as soon as it is resampled."""
    input:
        before_image=layout.RENAMED["image"],
        before_label=layout.RENAMED["label"],
        after_image=layout.PROCESSED["image"],
        after_label=layout.PROCESSED["label"],
    output:
        report(
            layout.REPORT_MIP,
            category="Volumes",
            subcategory="MIP before / after resampling",
            caption="../report/mips.rst",
            labels={"volume": "{vol}"},
        ),
    log:
        "logs/report/mip/{vol}.log",
    benchmark:
        "benchmarks/report_mip/{vol}.tsv"
    conda:
        ENV
    container:
        CONTAINER
    resources:
        mem_mb=report_mip_mem_mb,
        runtime=10,
    params:
        before=section_root(layout.RENAMED_ROOT),
        after=section_root(layout.PROCESSED_ROOT),
    shell:
        "minivess-bundle report-mip --volume {wildcards.vol} --before {params.before:q} "
        "--after {params.after:q} --out {output:q} > {log:q} 2>&1"


rule report_figures:
    """Draw the drift gallery, the dataset plots and the validation table (one matplotlib
    start-up); the per-volume MIPs are report_mip's."""
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
    conda:
        ENV
    container:
        CONTAINER
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
