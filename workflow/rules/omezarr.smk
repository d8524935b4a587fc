"""OME-Zarr (optional, `ome_zarr.enabled`): every valid processed volume with its vessel
mask as OME-Zarr 0.5 (Zarr v3) with a multiscale pyramid, for napari and other viewers.
Beside the bag, not in it (README, "OME-Zarr")."""


rule omezarr:
    """Write one processed volume and its mask as an OME-Zarr 0.5 image with labels."""
    input:
        image=layout.PROCESSED["image"],
        label=layout.PROCESSED["label"],
    output:
        zarr=directory(layout.OMEZARR),
        record=layout.OMEZARR_RECORD,
    log:
        "logs/omezarr/{vol}.log",
    benchmark:
        "benchmarks/omezarr/{vol}.tsv"
    conda:
        ENV
    resources:
        mem_mb=omezarr_mem_mb,
        runtime=30,
    shell:
        "minivess-bundle omezarr {wildcards.vol} --image {input.image:q} "
        "--label {input.label:q} --out {output.zarr:q} --record {output.record:q} "
        "> {log:q} 2>&1"
