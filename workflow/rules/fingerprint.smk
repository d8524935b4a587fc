"""Fingerprint: a full real build's renamed tree against the dataset authors' DVC
snapshot (minivess_bundle.fingerprint; docs/fingerprint.md)."""

from minivess_bundle.fingerprint import applies as fingerprint_applies  # noqa: E402

#: Checked when the build copies the release's bytes: a real source and all 70 volumes.
FINGERPRINT = fingerprint_applies(SOURCE, VOLUMES)


def fingerprint_outputs():
    """The check's record when the build is checked (see FINGERPRINT), else nothing."""
    return [layout.FINGERPRINT] if FINGERPRINT else []


def print_fingerprint():
    """Say on the console whether the renamed tree equals the authors' snapshot."""
    record = Path(layout.FINGERPRINT)
    if FINGERPRINT and record.is_file():
        check = json.loads(record.read_text())
        verdict = "" if check["matches"] else "WARNING: "
        print(f"minivess-bundle: {verdict}{check['message']}")


rule fingerprint:
    """DVC's directory hash of the renamed tree (licence left out) against the authors'."""
    input:
        files=[path for vol in VOLUMES for path in renamed(vol).values()],
        licence=layout.licence(LICENCE),
    output:
        layout.FINGERPRINT,
    log:
        "logs/fingerprint.log",
    conda:
        ENV
    container:
        CONTAINER
    resources:
        mem_mb=256,
        runtime=10,
    params:
        root=layout.RENAMED_ROOT,
        licence=f"metadata/{LICENCE}",
        strict="--strict" if config["fingerprint"]["strict"] else "",
    shell:
        "minivess-bundle fingerprint {params.root:q} --exclude {params.licence:q} "
        "--out {output:q} {params.strict} > {log:q} 2>&1"
