"""No tracked file names a package registry's host (issue #25, item 6).

Installers reach their registries through the user's own configuration (a mirror, a proxy, a
company index); a host spelled in a script or a file bypasses it. So the repository names none:
scripts use the clients' configured defaults (pip's index, apt's sources). The hosts are the
default registries of the clients the project touches: PyPI (index and files), npm, Debian's
mirrors, conda's channels. An explicitly opted-in alternative index (the PyTorch CPU wheels) is
not a default registry and is not listed. The hosts are written here as label tuples, so this
file does not name them either.
"""

from __future__ import annotations

import re
import subprocess

from conftest import REPO

REGISTRY_HOSTS = (
    ("pypi", "org"),
    ("pypi", "python", "org"),
    ("pythonhosted", "org"),
    ("registry", "npmjs", "org"),
    ("npmjs", "com"),
    ("registry", "yarnpkg", "com"),
    ("deb", "debian", "org"),
    ("security", "debian", "org"),
    ("ftp", "debian", "org"),
    ("ftp", "[a-z]{2}", "debian", "org"),  # the country mirrors (ftp.<cc>.…)
    ("snapshot", "debian", "org"),
    ("archive", "debian", "org"),
    ("httpredir", "debian", "org"),
    ("conda", "anaconda", "org"),
    ("repo", "anaconda", "com"),
    ("anaconda", "org"),
    ("prefix", "dev"),
)
# A host (its labels may be regexes), or any subdomain of it (files.<PyPI's file host>), bounded
# so that a longer name that merely ends alike (e.g. "notpypi" + ".org") does not count.
PATTERN = re.compile(
    r"(?<![A-Za-z0-9-])(?:[A-Za-z0-9-]+\.)*(?:"
    + "|".join(r"\.".join(labels) for labels in REGISTRY_HOSTS)
    + r")(?![A-Za-z0-9-])",
    re.IGNORECASE,
)


def _host(*labels: str) -> str:
    return ".".join(labels)


def registry_hosts_in(text: str) -> list[str]:
    """The registry host names that ``text`` spells."""
    return [match.group(0) for match in PATTERN.finditer(text)]


def test_the_pattern_finds_each_registry_host_and_its_subdomains_in_urls():
    for labels in REGISTRY_HOSTS:
        host = _host(*("de" if label == "[a-z]{2}" else label for label in labels))
        assert registry_hosts_in(f"pip install --index-url https://{host}/simple x") == [host]
    assert registry_hosts_in(f"https://files.{_host('pythonhosted', 'org')}/packages/a.whl")
    assert registry_hosts_in(f"deb http://ftp.de.{_host('debian', 'org')}/debian bookworm main")
    assert registry_hosts_in(f"URIs: HTTP://{_host('DEB', 'DEBIAN', 'ORG')}/debian")


def test_the_pattern_leaves_names_that_only_look_alike():
    """Boundaries: package and channel names, other hosts ending alike, the opt-in index."""
    for text in (
        "pip install pypi-simple conda-forge-pinning",  # package names, no host
        "channels: [conda-forge, nodefaults]",  # a conda channel by name is the client's lookup
        f"https://not{_host('pypi', 'org')}/x",  # another host that merely ends alike
        f"https://{_host('pypi', 'organisation', 'example')}/x",  # a longer last label
        f"--extra-index-url https://{_host('download', 'pytorch', 'org')}/whl/cpu",
    ):
        assert registry_hosts_in(text) == [], text


# Known and pending, each with its reason; the scan fails once an entry no longer applies, so
# the list only shrinks. The crate's software URL must become the repository's (issue #25: "the
# repository or absent"): absent fails the Process Run Crate profile (roc-validator: "A
# SoftwareApplication MUST have a url"), and the project has no public repository URL yet.
PENDING = {"src/minivess_bundle/bundle/rocrate.py": 1}


def test_no_tracked_file_names_a_package_registry_host():
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = [name.decode() for name in files if name]
    assert len(files) > 100, "git ls-files listed almost nothing: not the repository?"
    found = []
    for name in files:
        path = REPO / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary (NIfTI, gzip): no text to name a host
            continue
        hits = [
            f"{name}:{number}: {host}"
            for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1)
            for host in registry_hosts_in(line)
        ]
        if name in PENDING:
            assert len(hits) == PENDING[name], f"update PENDING for {name}: {hits}"
            continue
        found += hits
    assert not found, "registry hosts in tracked files (use the client's default):\n" + "\n".join(
        found
    )
