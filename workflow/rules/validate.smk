"""Validate: modality-aware checks of every renamed pair; a per-volume report, and an
aggregate that decides which volumes go on (on_invalid: fail | quarantine)."""


rule validate:
    """Check one renamed volume pair and its json; write its report."""
    input:
        **layout.RENAMED,
    output:
        layout.VALIDATION,
    log:
        "logs/validate/{vol}.log",
    benchmark:
        "benchmarks/validate/{vol}.tsv"
    conda:
        ENV
    resources:
        mem_mb=validate_mem_mb,
        runtime=10,
    params:
        spec=VALIDATE_SPEC,
    shell:
        "minivess-bundle validate {wildcards.vol} --spec {params.spec:q} "
        "--image {input.image:q} --label {input.label:q} --metadata {input.metadata:q} "
        "--out {output:q} > {log:q} 2>&1"


checkpoint validation_report:
    """Merge the per-volume reports; the volumes it lists as valid go on."""
    input:
        expand(layout.VALIDATION, vol=VOLUMES),
    output:
        layout.VALIDATION_REPORT,
    log:
        "logs/validate/report.log",
    conda:
        ENV
    resources:
        mem_mb=256,
        runtime=5,
    params:
        spec=VALIDATE_SPEC,
    shell:
        "minivess-bundle validation-report {input:q} --spec {params.spec:q} "
        "--out {output:q} > {log:q} 2>&1"
