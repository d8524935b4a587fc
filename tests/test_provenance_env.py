"""provenance_env: the container image recorded in the bundle's provenance."""

from __future__ import annotations

from minivess_bundle.bundle.provenance_env import container_image, parse_containerenv

# What podman 4.3 writes into a --privileged container's /run/.containerenv.
PRIVILEGED = (
    'engine="podman-4.3.1"\n'
    'name="eager_turing"\n'
    'id="5b1c0e3f9d2a"\n'
    'image="localhost/minivess-bundle:0.1.0"\n'
    'imageid="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"\n'
    "rootless=0\n"
)


def test_privileged_containerenv_gives_the_image_name_and_id_only(tmp_path):
    env = tmp_path / ".containerenv"
    env.write_text(PRIVILEGED)
    assert container_image(env) == {
        "engine": "podman-4.3.1",
        "image": "localhost/minivess-bundle:0.1.0",
        "imageid": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    }  # never the container's name or id: they change with every run


def test_no_container_or_an_unprivileged_one_records_none(tmp_path):
    assert container_image(tmp_path / "missing") is None  # not in a container
    empty = tmp_path / ".containerenv"
    empty.write_text("")  # unprivileged podman: the file exists, empty
    assert container_image(empty) is None


def test_parse_containerenv_unquotes_go_quoted_values():
    assert parse_containerenv('image="a b\\"c"\nrootless=1\nnoise\n') == {
        "image": 'a b"c',
        "rootless": "1",
    }
