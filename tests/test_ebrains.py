"""EBRAINS download against a local fake data-proxy with injected faults.

Every test asserts the final state: the files end correct and verified, or the
call fails with a clear error and nothing partial sits at a final path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fake_dataproxy import DATASET_ID, FakeDataProxy, write_release

from minivess_bundle.fetch import ebrains
from minivess_bundle.fetch.ebrains import ClientSettings, DownloadError

VOLUMES = ("mv01", "mv02", "mv03")
#: Whole workflow, kept quick: native grid, no drift variants.
FAST_BUNDLE = {"resample": {"target_spacing_um": "native"}, "drift": {"enabled": False}}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """A tiny release in the EBRAINS layout (synthetic volumes, a licence stand-in)."""
    return write_release(tmp_path_factory.mktemp("release"), VOLUMES, 48, 10)


@pytest.fixture
def proxy(release):
    with FakeDataProxy(release) as server:
        yield server


@pytest.fixture(autouse=True)
def no_real_sleep(monkeypatch):
    """Backoff waits are recorded, not slept, so fault tests run fast."""
    waits: list[float] = []
    monkeypatch.setattr(ebrains, "_sleep", waits.append)
    return waits


def settings_for(proxy, **overrides) -> ClientSettings:
    values = {
        "api_base": proxy.api_base,
        "dataset_id": DATASET_ID,
        # Generous: a loaded machine must not turn a slow answer into a retry the test counts.
        # Only the trickle fault lowers the read timeout, to 1 s (its stall lasts 2.5 s).
        "read_timeout_s": 10.0,
        "connect_timeout_s": 10.0,
        "max_attempts": 4,
        "backoff_base_s": 0.01,
    }
    values.update(overrides)
    return ClientSettings(**values)


def listing_file(proxy, tmp_path, volumes=VOLUMES) -> Path:
    out = tmp_path / "listing.json"
    ebrains.fetch_listing(out, volumes, settings_for(proxy), page_size=4)
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_listing_follows_pagination_and_is_saved_sorted(proxy, tmp_path, release):
    out = listing_file(proxy, tmp_path)
    import json

    saved = json.loads(out.read_text())
    names = [o["name"] for o in saved["objects"]]
    assert names == proxy.names() and len(names) == 10
    listing_calls = [r for r in proxy.requests if r["path"].endswith(DATASET_ID)]
    assert len(listing_calls) == 4  # 4 + 4 + 2 + 0 (only the empty page ends it)
    first = saved["objects"][0]
    assert set(first) == {"name", "bytes", "hash", "last_modified"}
    assert first["bytes"] == (release / first["name"]).stat().st_size


def listing_queries(proxy) -> list[str]:
    return [r["query"] for r in proxy.requests if r["path"].endswith(DATASET_ID)]


def test_listing_continues_past_pages_the_server_caps_below_the_limit(proxy, tmp_path):
    proxy.page_cap = 2  # the client asks for 4; a real store may cap lower
    saved = json.loads(listing_file(proxy, tmp_path).read_text())
    assert [o["name"] for o in saved["objects"]] == proxy.names()
    assert saved["count"] == 10
    queries = listing_queries(proxy)
    assert len(queries) == 6  # 2 + 2 + 2 + 2 + 2 + 0
    assert queries[0] == "limit=4"
    assert queries[-1] == "limit=4&marker=seg%2Fmv03_y.nii.gz"


def test_listing_whose_last_page_holds_exactly_limit_objects_is_complete(proxy, tmp_path):
    ebrains.fetch_listing(tmp_path / "listing.json", VOLUMES, settings_for(proxy), page_size=5)
    saved = json.loads((tmp_path / "listing.json").read_text())
    assert [o["name"] for o in saved["objects"]] == proxy.names()  # 5 + 5, then empty
    assert len(listing_queries(proxy)) == 3


def test_listing_stops_on_a_repeated_marker_naming_it(proxy, tmp_path):
    proxy.ignore_marker = True  # the first page again and again
    with pytest.raises(DownloadError, match=r"repeated the marker 'json/mv03.json'"):
        listing_file(proxy, tmp_path)
    assert len(listing_queries(proxy)) == 2
    assert not (tmp_path / "listing.json").exists()


def test_listing_missing_objects_names_each_of_them(proxy, tmp_path):
    proxy.hidden = {"seg/mv02_y.nii.gz", "json/mv03.json"}
    with pytest.raises(
        DownloadError,
        match=r"lacks 2 required object\(s\): seg/mv02_y.nii.gz, "
        r"json/mv03.json",
    ):
        listing_file(proxy, tmp_path)
    assert not (tmp_path / "listing.json").exists()


def fetch(proxy, tmp_path, volume="mv01", **overrides):
    listing = tmp_path / "listing.json"
    if not listing.exists():
        listing_file(proxy, tmp_path)
    return ebrains.fetch_volume(
        volume, listing, tmp_path / "cache", tmp_path / "staging", settings_for(proxy, **overrides)
    )


def assert_volume_landed(tmp_path, release, volume="mv01"):
    for rel in (f"raw/{volume}.nii.gz", f"seg/{volume}_y.nii.gz", f"json/{volume}.json"):
        assert sha(tmp_path / "staging" / rel) == sha(release / rel), rel
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_volume_downloads_byte_identical_through_the_redirect(proxy, tmp_path, release):
    records = fetch(proxy, tmp_path)
    assert_volume_landed(tmp_path, release)
    assert [r["sha256"] for r in records] == [
        sha(release / n) for n in ("raw/mv01.nii.gz", "seg/mv01_y.nii.gz", "json/mv01.json")
    ]
    assert len(proxy.store_requests("raw/mv01.nii.gz")) == 1
    agent = proxy.requests[-1]["headers"]["User-Agent"]
    assert agent.startswith("minivess-bundle/")


def test_authorization_goes_to_the_api_but_never_to_the_object_store(
    proxy, tmp_path, release, monkeypatch
):
    monkeypatch.setenv(ebrains.TOKEN_ENV, "secret-token")
    fetch(proxy, tmp_path)
    assert_volume_landed(tmp_path, release)
    api = [r for r in proxy.requests if r["path"].startswith("/api/v1/datasets/")]
    store = [r for r in proxy.requests if r["path"].startswith("/store/")]
    assert api and all(r["headers"].get("Authorization") == "Bearer secret-token" for r in api)
    assert store and all("Authorization" not in r["headers"] for r in store)


@pytest.mark.parametrize(
    "fault", ["500", "503", "429", "408", "reset", "truncate", "wrongbytes", "trickle"]
)
def test_transient_fault_is_retried_and_the_file_ends_verified(
    proxy, tmp_path, release, fault, no_real_sleep
):
    proxy.trickle_seconds = 2.5
    proxy.faults["raw/mv01.nii.gz"] = [fault, fault]
    fetch(proxy, tmp_path, **({"read_timeout_s": 1.0} if fault == "trickle" else {}))
    assert_volume_landed(tmp_path, release)
    assert len(proxy.store_requests("raw/mv01.nii.gz")) == 3
    assert len(no_real_sleep) == 2


def test_retry_after_is_honoured(proxy, tmp_path, release, no_real_sleep):
    proxy.faults["seg/mv01_y.nii.gz"] = ["503:7"]
    fetch(proxy, tmp_path)
    assert_volume_landed(tmp_path, release)
    assert no_real_sleep == [pytest.approx(7.0)]


def test_404_is_not_retried_and_names_url_and_attempt(proxy, tmp_path):
    proxy.faults["json/mv01.json"] = ["404"]
    with pytest.raises(DownloadError) as info:
        fetch(proxy, tmp_path)
    message = str(info.value)
    assert message.startswith("mv01: download: GET http://127.0.0.1:")
    assert "/json/mv01.json answered HTTP 404 on attempt 1 (not retried)" in message
    assert len(proxy.store_requests("json/mv01.json")) == 1
    assert not (tmp_path / "staging" / "json" / "mv01.json").exists()


def test_persistent_fault_fails_with_attempts_and_expectation(proxy, tmp_path):
    proxy.faults["raw/mv01.nii.gz"] = ["wrongbytes"] * 10
    with pytest.raises(DownloadError) as info:
        fetch(proxy, tmp_path, max_attempts=3)
    message = str(info.value)
    assert "failed after 3 attempts: md5 " in message and "expected " in message
    assert not (tmp_path / "cache" / "raw" / "mv01.nii.gz").exists()
    assert not (tmp_path / "staging" / "raw" / "mv01.nii.gz").exists()
    assert not list((tmp_path / "cache").rglob("*.part"))  # wrong bytes are never kept


def test_rerun_after_the_fault_clears_refetches_only_what_is_missing(proxy, tmp_path, release):
    proxy.faults["json/mv01.json"] = ["404"]
    with pytest.raises(DownloadError):
        fetch(proxy, tmp_path)
    fetched_before = len(proxy.store_requests("raw/mv01.nii.gz"))
    fetch(proxy, tmp_path)
    assert_volume_landed(tmp_path, release)
    assert len(proxy.store_requests("raw/mv01.nii.gz")) == fetched_before == 1


def test_complete_rerun_makes_no_request_at_all(proxy, tmp_path, release):
    fetch(proxy, tmp_path)
    before = len(proxy.requests)
    records = fetch(proxy, tmp_path)
    assert len(proxy.requests) == before
    assert [r["fetched"] for r in records] == [0, 0, 0]


def _partial(tmp_path, release, name="raw/mv02.nii.gz"):
    data = (release / name).read_bytes()
    part = tmp_path / "cache" / "raw" / ".mv02.nii.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 3])
    return len(data) // 3, len(data)


def test_partial_file_resumes_with_a_range_request(proxy, tmp_path, release):
    listing_file(proxy, tmp_path)
    offset, size = _partial(tmp_path, release)
    records = fetch(proxy, tmp_path, volume="mv02")
    assert_volume_landed(tmp_path, release, "mv02")
    (request,) = proxy.store_requests("raw/mv02.nii.gz")
    assert request["headers"]["Range"] == f"bytes={offset}-"
    assert records[0]["fetched"] == size - offset


@pytest.mark.parametrize("bytes_ok", [True, False])
def test_partial_file_at_full_length_is_checked_not_resumed(proxy, tmp_path, release, bytes_ok):
    """A job killed between the last byte and the rename leaves a full-length part; asking
    for the bytes after its end would be answered 416 (not retried)."""
    listing_file(proxy, tmp_path)
    data = (release / "raw/mv02.nii.gz").read_bytes()
    part = tmp_path / "cache" / "raw" / ".mv02.nii.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data if bytes_ok else data[:-1] + bytes([data[-1] ^ 0xFF]))
    records = fetch(proxy, tmp_path, volume="mv02")
    assert_volume_landed(tmp_path, release, "mv02")
    requests = proxy.store_requests("raw/mv02.nii.gz")
    if bytes_ok:  # verified as it is: no request at all
        assert requests == [] and records[0]["fetched"] == 0
    else:  # wrong bytes: fetched again from zero
        assert [r["headers"].get("Range") for r in requests] == [None]


def test_partial_file_restarts_when_the_server_ignores_ranges(proxy, tmp_path, release):
    listing_file(proxy, tmp_path)
    proxy.range_support = False
    _, size = _partial(tmp_path, release)
    records = fetch(proxy, tmp_path, volume="mv02")
    assert_volume_landed(tmp_path, release, "mv02")
    assert records[0]["fetched"] == size - size // 3  # counted from the old part's end
    assert sha(tmp_path / "cache" / "raw" / "mv02.nii.gz") == sha(release / "raw/mv02.nii.gz")


def test_non_md5_hash_checks_size_and_records_sha256(release, tmp_path):
    with FakeDataProxy(release, md5_hashes=False) as proxy:
        records = fetch(proxy, tmp_path)
    assert_volume_landed(tmp_path, release)
    assert records[0]["sha256"] == sha(release / "raw/mv01.nii.gz")


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "raw/../../x", "a\\b", "raw//x"])
def test_listing_names_that_could_escape_the_cache_are_refused(name):
    with pytest.raises(DownloadError, match="is not a safe relative path"):
        ebrains.safe_relative(name)


def test_backoff_grows_and_is_capped():
    settings = ClientSettings(backoff_base_s=1.0, backoff_max_s=8.0)
    assert all(0 <= ebrains.backoff_seconds(1, settings, None) <= 1.0 for _ in range(50))
    assert all(0 <= ebrains.backoff_seconds(10, settings, None) <= 8.0 for _ in range(50))
    assert ebrains.backoff_seconds(1, settings, 5.0) == 5.0
    assert ebrains.retry_after_seconds("12") == 12.0
    assert ebrains.retry_after_seconds("soon") is None


@pytest.mark.workflow
def test_workflow_with_ebrains_source_builds_what_the_dir_source_builds(release, tmp_path):
    from conftest import tree_digest
    from workflow_utils import make_workdir, run_snakemake

    with FakeDataProxy(release) as proxy:
        proxy.page_cap = 2  # pages shorter than the client's limit, as real stores serve
        proxy.faults["raw/mv02.nii.gz"] = ["503:0", "reset"]
        web = make_workdir(
            tmp_path / "web",
            source="ebrains",
            volumes=list(VOLUMES),
            ebrains={"api_base": proxy.api_base},
            **FAST_BUNDLE,
        )
        run_snakemake(web, "--cores", "2", "all")
        requests_after_build = len(proxy.requests)
        rerun = run_snakemake(web, "--cores", "2", "all")
        assert len(proxy.requests) == requests_after_build  # nothing fetched again
        assert "Nothing to be done" in rerun.stdout + rerun.stderr
    local = make_workdir(
        tmp_path / "local",
        source="dir",
        volumes=list(VOLUMES),
        dir={"path": str(release)},
        **FAST_BUNDLE,
    )
    run_snakemake(local, "--cores", "2", "all")
    bag = "results/bundle/minivess-0.1.0/data"
    for section in ("raw", "processed"):  # the same volumes, byte for byte, in both bundles
        assert tree_digest(web / bag / section) == tree_digest(local / bag / section)
    provenance = json.loads((web / bag / "provenance.json").read_text())
    assert provenance["ebrains_listing"]["count"] == 10  # the listing travels with the bundle
    listing = (web / "results" / "downloads" / "ebrains" / "listing.json").read_text()
    assert '"dataset_id": "bf268b89-1420-476b-b428-b85a913eb523"' in listing
    log = (web / "logs" / "fetch" / "mv02.log").read_text()
    assert "HTTP 503 on attempt 1" in log and "summary: 3 files" in log


def _release_zip(release: Path, out: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(release.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(release).as_posix())
    return out


def test_zip_url_downloads_resumes_and_verifies(release, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    archive = _release_zip(release, served / "d-bf268b89-1420-476b-b428-b85a913eb523.zip")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    with FakeDataProxy(served) as proxy:
        proxy.faults[archive.name] = ["reset"]
        url = proxy.api_base.replace("/api", "/store/") + archive.name
        out = tmp_path / "downloads" / archive.name
        record = ebrains.download_url(url, out, settings_for(proxy), expected_md5=md5)
        gets = proxy.store_requests(archive.name)
        assert out.read_bytes() == archive.read_bytes()
        assert record["sha256"] == sha(archive)
        assert gets[-1]["headers"]["Range"].startswith("bytes=")  # resumed after the reset
        with pytest.raises(DownloadError, match="failed after 4 attempts: md5"):
            ebrains.download_url(
                url, tmp_path / "other" / archive.name, settings_for(proxy), expected_md5="0" * 32
            )
        assert not (tmp_path / "other" / archive.name).exists()


@pytest.mark.workflow
def test_workflow_zip_url_builds_what_the_dir_source_builds(release, tmp_path):
    from conftest import tree_digest
    from workflow_utils import make_workdir, run_snakemake

    served = tmp_path / "served"
    served.mkdir()
    archive = _release_zip(release, served / "d-bf268b89-1420-476b-b428-b85a913eb523.zip")
    with FakeDataProxy(served) as proxy:
        url = proxy.api_base.replace("/api", "/store/") + archive.name
        web = make_workdir(
            tmp_path / "web",
            source="zip",
            volumes=list(VOLUMES),
            zip={"url": url, "md5": hashlib.md5(archive.read_bytes()).hexdigest()},
        )
        run_snakemake(web, "--cores", "2", "results/renamed_inventory.json")
    local = make_workdir(
        tmp_path / "local", source="dir", volumes=list(VOLUMES), dir={"path": str(release)}
    )
    run_snakemake(local, "--cores", "2", "results/renamed_inventory.json")
    assert tree_digest(web / "results" / "renamed") == tree_digest(local / "results" / "renamed")
    assert (web / "results" / "downloads" / archive.name).read_bytes() == archive.read_bytes()


def test_unreachable_server_fails_after_bounded_attempts_naming_the_url(tmp_path, no_real_sleep):
    import socket

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ClientSettings(
        api_base=f"http://127.0.0.1:{port}/api", max_attempts=3, backoff_base_s=0.01
    )
    with pytest.raises(
        DownloadError,
        match=rf"GET http://127.0.0.1:{port}/api/v1/datasets/"
        r".* failed after 3 attempts \(ConnectError\)",
    ):
        ebrains.fetch_listing(tmp_path / "listing.json", ["mv01"], settings)
    assert len(no_real_sleep) == 2


def test_tls_verification_stays_on_and_a_ca_bundle_is_loaded(tmp_path):
    import ssl

    client = ebrains.make_client(ClientSettings())
    context = client._transport._pool._ssl_context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with pytest.raises(DownloadError, match=r"download: cannot load the CA bundle .*missing\.pem"):
        ebrains.make_client(ClientSettings(ca_bundle=str(tmp_path / "missing.pem")))
