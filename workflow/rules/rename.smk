"""Rename: EBRAINS layout -> imagesTr/labelsTr/metadata, bytes untouched
(hardlinked where possible, else copied and verified)."""


rule rename:
    """Give one volume the names MONAI and nnU-Net expect (mask suffix _y dropped)."""
    input:
        **layout.STAGED,
    output:
        **layout.RENAMED,
    log:
        "logs/rename/{vol}.log",
    benchmark:
        "benchmarks/rename/{vol}.tsv"
    conda:
        ENV
    resources:
        mem_mb=128,
        runtime=5,
    shell:
        "minivess-bundle rename {wildcards.vol} "
        "--image {input.image:q} --label {input.label:q} --metadata {input.metadata:q} "
        "--out-image {output.image:q} --out-label {output.label:q} "
        "--out-metadata {output.metadata:q} > {log:q} 2>&1"


rule rename_licence:
    """Keep the licence beside the metadata, bytes untouched."""
    input:
        layout.licence(LICENCE, "staging"),
    output:
        layout.licence(LICENCE),
    log:
        "logs/rename/licence.log",
    conda:
        ENV
    resources:
        mem_mb=128,
        runtime=5,
    shell:
        "minivess-bundle place {input:q} {output:q} > {log:q} 2>&1"


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
