"""Fingerprint: a full real build's renamed tree against the dataset authors' DVC
snapshot (minivess_bundle.fetch.fingerprint; docs/fingerprint.md). Runs when FINGERPRINT
(common.smk) says the build is checked; its record goes into the bag's provenance."""


rule fingerprint:
    """DVC's directory hash of the renamed tree (licence left out) against the authors'."""
    input:
        files=[path for vol in VOLUMES for path in renamed(vol).values()],
        licence=layout.licence(LICENCE),
    output:
        layout.FINGERPRINT,
    log:
        "logs/fingerprint.log",
    # As soon as the renamed tree is complete: the bundle needs its record, and a late
    # fingerprint held the bundle back behind report_figures (bundle.smk).
    priority: 3
    conda:
        ENV
    resources:
        mem_mb=256,
        runtime=10,
    params:
        root=lambda wildcards, input: Path(input.files[0]).parents[1],
        licence=lambda wildcards, input: Path(input.licence)
        .relative_to(Path(input.files[0]).parents[1])
        .as_posix(),
        strict="--strict" if config["fingerprint"]["strict"] else "--no-strict",
    shell:
        "minivess-bundle fingerprint {params.root:q} --exclude {params.licence:q} "
        "--out {output:q} {params.strict:q} > {log:q} 2>&1"
