"""Rename: the renamed tree (imagesTr/labelsTr/metadata, bytes untouched) listed through
the package's loader. The renaming itself is a move inside each fetch job
(workflow/rules/fetch.smk, minivess_bundle.fetch.rename)."""


rule renamed_inventory:
    """List every renamed pair with sizes and sha256, through the package's loader."""
    input:
        [path for vol in VOLUMES for path in renamed(vol).values()],
    output:
        layout.INVENTORY,
    log:
        "logs/rename/inventory.log",
    conda:
        ENV
    resources:
        mem_mb=256,
        runtime=10,
    params:
        root=lambda wildcards, input: str(Path(input[0]).parents[1]),
    shell:
        "minivess-bundle inventory {params.root:q} --out {output:q} > {log:q} 2>&1"
