"""Check: prove the bundle is usable by the tools people train with. Not part of `all`:
`snakemake --cores 2 check` (torch/MONAI from the `train` extra; envs/train.yaml)."""


rule train_smoke:
    """One epoch of a small 3-D UNet on patches of the bundle (CUDA when present)."""
    input:
        bag=BUNDLE["bag_manifest"],
        verified=BUNDLE["verified"],
    output:
        metrics=layout.CHECK_SMOKE,
        model=layout.CHECK_MODEL,
    log:
        "logs/check/train_smoke.log",
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=fixed_mem_mb(8000),
        runtime=60,
    params:
        bag=lambda wildcards, input: str(Path(input.bag).parent),
        seed=config["seed"],
    shell:
        "minivess-bundle train-smoke {params.bag:q} --out {output.metrics:q} "
        "--model-out {output.model:q} --seed {params.seed} > {log:q} 2>&1"


rule export_nnunet:
    """The bundle as an nnU-Net v2 raw dataset (hardlinks), checked against its rules."""
    input:
        bag=BUNDLE["bag_manifest"],
        verified=BUNDLE["verified"],
    output:
        layout.NNUNET_DATASET,
    log:
        "logs/check/export_nnunet.log",
    conda:
        ENV
    resources:
        mem_mb=fixed_mem_mb(1024),
        runtime=30,
    params:
        bag=lambda wildcards, input: str(Path(input.bag).parent),
        out_root=lambda wildcards, output: str(Path(output[0]).parent.parent),
    shell:
        "minivess-bundle export-nnunet {params.bag:q} --out-root {params.out_root:q} "
        "> {log:q} 2>&1"


rule check:
    """Everything that proves the bundle usable: verified, trains, exports to nnU-Net."""
    input:
        rules.train_smoke.output.metrics,
        rules.export_nnunet.output,
