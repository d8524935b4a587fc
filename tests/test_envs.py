"""Per-rule software environments: every rule names the pinned conda env and the project
image, the env's pins are the lock's, and the image tag is the package version."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution

import pytest
import yaml
from conftest import REPO
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ENV_FILE = REPO / "envs" / "minivess.yaml"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
ACTIONS = ("shell", "run", "script", "notebook", "wrapper", "cwl")


def _pins(lines) -> dict[str, str]:
    """{canonical name: version} of ``name==version`` lines; anything else is an error."""
    pins = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _env_pip_pins() -> dict[str, str]:
    env = yaml.safe_load(ENV_FILE.read_text())
    pip = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict)]
    assert len(pip) == 1, "envs/minivess.yaml needs exactly one pip: section"
    return _pins(pip[0])


def _lock_pins() -> dict[str, str]:
    return _pins((REPO / "requirements" / "lock.txt").read_text().splitlines())


def test_env_pins_are_exactly_the_lock_versions():
    env, lock = _env_pip_pins(), _lock_pins()
    assert env, "no pins in envs/minivess.yaml"
    assert {name: lock.get(name) for name in env} == env


def test_env_pins_cover_the_package_runtime_dependency_closure():
    """Every package that pyproject's [project].dependencies pull in (transitively, as
    installed here from the lock) is pinned in the env, so conda's pip resolves nothing."""
    marker_env = dict(default_environment(), python_version="3.11", extra="")
    todo = [Requirement(spec) for spec in PYPROJECT["project"]["dependencies"]]
    closure: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in closure or (requirement.marker and not requirement.marker.evaluate(marker_env)):
            continue
        closure.add(name)
        try:
            todo += [Requirement(spec) for spec in distribution(name).requires or []]
        except PackageNotFoundError:
            pytest.fail(f"{name} is not installed: pip install -c requirements/lock.txt -e .")
    missing = sorted(closure - set(_env_pip_pins()))
    assert not missing, f"add to envs/minivess.yaml (version from the lock): {missing}"


def test_env_python_is_the_container_python_and_needs_no_paths():
    env = yaml.safe_load(ENV_FILE.read_text())
    assert "python=3.11" in env["dependencies"]  # Debian bookworm's python3 in the image
    assert "nodefaults" in env["channels"]
    text = ENV_FILE.read_text()
    # Snakemake copies the env file into .snakemake/conda/, so relative paths cannot work.
    assert not re.search(r"^\s*-\s*-[re]\s", text, re.M)
    deploy = ENV_FILE.with_name("minivess.post-deploy.sh")
    assert "pip install --no-deps" in deploy.read_text()


def _rule_blocks():
    """(file, rule, {keyword}) for every rule of the workflow, whatever the config selects."""
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    for path in files:
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            match = re.match(r"^(\s*)(?:local)?rule (\w+):", line)
            if not match:
                continue
            indent = len(match.group(1))
            keywords = set()
            for body in lines[index + 1 :]:
                if body.strip() and len(body) - len(body.lstrip()) <= indent:
                    break
                keyword = re.match(rf"^\s{{{indent + 4}}}(\w+):", body)
                if keyword:
                    keywords.add(keyword.group(1))
            yield path.relative_to(REPO).as_posix(), match.group(2), keywords


def test_every_rule_that_runs_something_names_the_conda_env_and_none_its_own_container():
    """The conda env per rule; the image once, for all, by the Snakefile's global directive."""
    blocks = list(_rule_blocks())
    assert {"fetch", "renamed_inventory"} <= {rule for _, rule, _ in blocks}
    lacking = [
        f"{file}: rule {rule} lacks conda"
        for file, rule, keywords in blocks
        if keywords & set(ACTIONS) and "conda" not in keywords
    ]
    assert not lacking, "\n".join(lacking)
    own = [f"{file}: rule {rule}" for file, rule, keywords in blocks if "container" in keywords]
    assert not own, "a rule names its own container (the Snakefile's global one serves):\n" + (
        "\n".join(own)
    )
    snakefile = (REPO / "Snakefile").read_text()
    assert re.findall(r"^container: (.+)$", snakefile, re.M) == ["CONTAINER"]
    # Before the rule files: the directive applies to the rules defined after it.
    directive = snakefile.index("\ncontainer: CONTAINER\n")
    assert snakefile.index('include: "workflow/rules/common.smk"') < directive
    assert directive < snakefile.index('include: "workflow/rules/fetch.smk"')


def _rule_images(workdir, **config) -> dict[str, tuple[str | None, bool]]:
    """{rule: (container image, runs a command)} as Snakemake itself loads the workflow under
    --sdm apptainer, for the repo's config plus ``config``."""
    from pathlib import Path

    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DeploymentMethod,
        DeploymentSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
        WorkflowSettings,
    )
    from workflow_utils import make_workdir

    make_workdir(workdir, **config)
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(),
            storage_settings=StorageSettings(),
            workflow_settings=WorkflowSettings(),
            deployment_settings=DeploymentSettings(deployment_method={DeploymentMethod.APPTAINER}),
            snakefile=Path(REPO / "Snakefile"),
            workdir=Path(workdir),
        )._workflow
        return {
            rule.name: (rule.container_img, bool(rule.shellcmd or rule.script))
            for rule in workflow.rules
        }


@pytest.mark.parametrize("source", ["synthetic", "ebrains"])
def test_under_apptainer_every_rule_that_runs_a_command_gets_the_configured_image(tmp_path, source):
    image = "docker://localhost/minivess-bundle:test-only"
    rules = _rule_images(tmp_path, source=source, container_image=image)
    commands = {name for name, (_, runs) in rules.items() if runs}
    assert {"renamed_inventory", "bundle", "verify_bundle"} <= commands and len(commands) >= 20
    assert ("fetch_ebrains" in rules) == (source == "ebrains") != ("fetch" in rules)
    wrong = {name: img for name, (img, runs) in rules.items() if runs and img != image}
    assert not wrong, wrong
    # Target rules (all, check) run nothing, so no container is ever started for them.
    assert not rules["all"][1] and not rules["check"][1]


def test_rules_point_at_the_pinned_env_and_the_project_image():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    env = re.search(r'^ENV = "([^"]+)"', common, re.M)
    assert env and (REPO / "workflow" / "rules" / env.group(1)).resolve() == ENV_FILE
    assert re.search(r'^CONTAINER = config\["container_image"\]', common, re.M)
    version = PYPROJECT["project"]["version"]
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["container_image"] == f"docker://localhost/minivess-bundle:{version}"
    containerfile = (REPO / "Containerfile").read_text()
    assert re.search(rf"^ARG VERSION={re.escape(version)}$", containerfile, re.M)


def test_train_env_pins_equal_the_lock_and_hold_the_pipeline_env():
    """envs/train.yaml: the pipeline env's pins plus torch (the lock's CPU build) and MONAI."""
    env = yaml.safe_load((REPO / "envs" / "train.yaml").read_text())
    (pip,) = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict)]
    pins = _pins(line for line in pip if not line.startswith("--"))
    lock = {name: version.split("+")[0] for name, version in _lock_pins().items()}
    assert {name: lock.get(name) for name in pins} == pins
    assert set(_env_pip_pins()) <= set(pins)
    assert pins["torch"] == "2.13.0" and pins["monai"] == "1.6.1"
