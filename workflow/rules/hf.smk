"""Hugging Face export (on demand: `snakemake --cores 2 hf`): the verified bag as a
`niftifolder` dataset with its dataset card (minivess_bundle.consumers.hf; docs/huggingface.md).
Not part of `all`: it is for whoever publishes to the Hub, and a second layout of the
bag's files (hardlinked where the file system allows) that no other stage reads."""


rule hf:
    """Lay the verified bag out as a Hugging Face dataset folder with its card."""
    input:
        bag=BUNDLE["bag_manifest"],
        verified=BUNDLE["verified"],
    output:
        card=f"{layout.hf_folder(config['bundle']['version'])}/README.md",
    log:
        "logs/hf/export.log",
    conda:
        ENV
    resources:
        mem_mb=fixed_mem_mb(256),
        runtime=30,
    params:
        bag=lambda wildcards, input: Path(input.bag).parent,
        out=lambda wildcards, output: Path(output.card).parent,
    shell:
        "minivess-bundle hf-export {params.bag:q} --out {params.out:q} > {log:q} 2>&1"
