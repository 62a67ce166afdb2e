"""The dependency locks: hand-edited inputs, hash-pinned locks made from them, and the imports.

requirements.in and requirements-dev.in are edited by hand; `make lock` turns them into
requirements.txt (the image's) and requirements-dev.txt (the venv's), every package pinned with
the hashes of its files. These tests read the files and the source only: no network. The
import checks map import names to the distributions installed next to this interpreter (the
venv, built from the dev lock).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_IN = ROOT / "requirements.in"
DEV_IN = ROOT / "requirements-dev.in"
RUNTIME_LOCK = ROOT / "requirements.txt"
DEV_LOCK = ROOT / "requirements-dev.txt"
MAKEFILE = ROOT / "Makefile"
LOCKS = {RUNTIME_LOCK: RUNTIME_IN, DEV_LOCK: DEV_IN}

OWN_PACKAGES = {"bookd", "bench", "tests", "harness", "faults"}
RUNTIME_SOURCES = [ROOT / "bookd", ROOT / "gunicorn_conf.py"]
ALL_SOURCES = [*RUNTIME_SOURCES, ROOT / "bench", ROOT / "harness", ROOT / "faults", ROOT / "tests"]

PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(\s*;\s*[^\\]+)?")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


# --- helpers ---------------------------------------------------------------


def normalize(name: str) -> str:
    """A distribution name in PEP 503 form, as the locks and pip compare them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_input(path: Path) -> dict[str, str | None]:
    """The packages a hand-edited input declares, following -r: name -> pinned version or None."""
    declared: dict[str, str | None] = {}
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith("-c "):
            continue  # a constraint only narrows versions; it declares nothing
        if line.startswith("-r "):
            declared |= read_input(path.parent / line[3:].strip())
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(==\s*([^\s;]+))?", line)
        assert match, f"{path.name}: cannot read {raw!r}"
        declared[normalize(match.group(1))] = match.group(3)
    return declared


@dataclass
class Pin:
    """One requirement of a lock: its first line, its hashes and what it is needed by."""

    line: str
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return normalize(re.split(r"[=<>!~;\s\[]", self.line, maxsplit=1)[0])

    @property
    def version(self) -> str | None:
        match = PIN.fullmatch(self.line)
        return match.group("version") if match else None


def read_lock(path: Path) -> list[Pin]:
    """The requirements of a lock in uv's format, each with its hashes and `# via` notes."""
    pins: list[Pin] = []
    for raw in path.read_text().splitlines():
        text = raw.strip().removesuffix("\\").strip()
        if not text:
            continue
        if not raw[0].isspace() and not text.startswith("#"):
            pins.append(Pin(line=text))
        elif not pins:
            assert text.startswith("#"), f"{path.name}: {raw!r} before the first requirement"
        elif text.startswith("#"):
            note = text.lstrip("#").strip().removeprefix("via").strip()
            if note:
                pins[-1].via.append(note)
        elif HASH.fullmatch(text):
            pins[-1].hashes.append(text)
        else:
            pins[-1].other.append(text)
    return pins


def by_name(path: Path) -> dict[str, Pin]:
    return {pin.name: pin for pin in read_lock(path)}


def third_party_imports(paths: list[Path]) -> Iterator[tuple[str, Path]]:
    """Each third-party module imported anywhere in PATHS, in full (``from a.b import c``:
    a.b.c), with the file importing it."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*.py")))]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in OWN_PACKAGES:
                    yield module, file


def top_level_imports(paths: list[Path]) -> dict[str, set[str]]:
    """Third-party top-level modules imported anywhere in PATHS: module -> files importing it."""
    found: dict[str, set[str]] = {}
    for module, file in third_party_imports(paths):
        found.setdefault(module.split(".")[0], set()).add(str(file.relative_to(ROOT)))
    return found


def providers(module: str) -> set[str]:
    """The installed distributions that provide the top-level MODULE."""
    return {normalize(d) for d in importlib.metadata.packages_distributions().get(module, [])}


def module_providers(module: str) -> set[str]:
    """The installed distributions that provide MODULE. A namespace package shared by
    several (opentelemetry) counts only those holding the module, or its nearest parent
    that one holds (``opentelemetry.sdk.trace.TracerProvider``: opentelemetry-sdk)."""
    dists = importlib.metadata.packages_distributions().get(module.split(".")[0], [])
    if len(dists) <= 1:
        return {normalize(d) for d in dists}
    parts = module.split(".")
    while len(parts) > 1:
        path = "/".join(parts)
        holders = {
            normalize(d)
            for d in dists
            if any(
                str(f).startswith(path + "/") or str(f) == path + ".py"
                for f in importlib.metadata.distribution(d).files or []
            )
        }
        if holders:
            return holders
        parts.pop()
    return {normalize(d) for d in dists}


def undeclared(imports: dict[str, set[str]], declared: set[str]) -> list[str]:
    return [
        f"{module} (imported by {', '.join(sorted(files))}; "
        f"installed from {sorted(providers(module)) or 'nothing'})"
        for module, files in sorted(imports.items())
        if not providers(module) & declared
    ]


# --- the locks ---------------------------------------------------------------


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_requirement_of_a_lock_is_one_exact_version_with_sha256_hashes(lock):
    pins = read_lock(lock)
    assert pins, f"{lock.name} pins nothing"
    for pin in pins:
        assert PIN.fullmatch(pin.line), f"{lock.name}: {pin.line!r} is not name==version"
        assert pin.hashes, f"{lock.name}: {pin.line!r} has no --hash=sha256:"
        assert not pin.other, f"{lock.name}: {pin.line!r} carries {pin.other}"


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_a_lock_names_no_local_path_and_no_index_so_it_installs_from_pypi_anywhere(lock):
    text = lock.read_text()
    for marker in ("file:", "/opt/", "/work/", "/tmp/", "index-url", "find-links", " @ ", "\n-e "):
        assert marker not in text, f"{lock.name} mentions {marker!r}"


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_a_lock_says_it_is_made_by_make_lock(lock):
    assert lock.read_text().splitlines()[:2] == [
        "# This file was autogenerated by uv via the following command:",
        "#    make lock",
    ]


@pytest.mark.parametrize(("lock", "source"), LOCKS.items(), ids=lambda p: p.name)
def test_every_package_of_an_input_is_in_its_lock_at_the_version_pinned_there(lock, source):
    pins = by_name(lock)
    for name, version in read_input(source).items():
        assert name in pins, f"{name} is in {source.name} but not in {lock.name}: make lock"
        if version is not None:
            assert pins[name].version == version, f"{name}: make lock"


@pytest.mark.parametrize(("lock", "source"), LOCKS.items(), ids=lambda p: p.name)
def test_a_lock_requires_directly_exactly_the_packages_its_input_declares(lock, source):
    # Given the `# via -r <input>` notes the lock tool writes for direct requirements
    direct = {p.name for p in read_lock(lock) if any(v.startswith("-r ") for v in p.via)}
    # Then a package removed from an input is gone from the lock's direct ones too
    assert direct == set(read_input(source)), "the lock is stale: make lock"


def test_the_venv_gets_the_images_runtime_packages_at_the_same_versions_and_hashes():
    assert "-c requirements.txt" in DEV_IN.read_text().splitlines()
    dev = by_name(DEV_LOCK)
    for name, pin in by_name(RUNTIME_LOCK).items():
        assert name in dev, f"{name} is in the runtime lock only"
        assert (dev[name].line, dev[name].hashes) == (pin.line, pin.hashes), name


def test_every_runtime_package_is_also_declared_for_the_venv():
    assert set(read_input(RUNTIME_IN)) <= set(read_input(DEV_IN))


def test_the_lock_tool_is_in_the_venv_so_make_lock_runs_from_it():
    assert "uv" in read_input(DEV_IN)


# --- imports -----------------------------------------------------------------


def test_every_third_party_import_is_provided_by_a_declared_package():
    declared = set(read_input(DEV_IN))
    missing = undeclared(top_level_imports(ALL_SOURCES), declared)
    assert not missing, "declare in requirements*.in, then make lock:\n" + "\n".join(missing)


def test_bookd_and_the_gunicorn_config_import_only_runtime_packages():
    runtime = set(read_input(RUNTIME_IN))
    missing = undeclared(top_level_imports(RUNTIME_SOURCES), runtime)
    assert not missing, "the image lacks these; declare in requirements.in:\n" + "\n".join(missing)


def test_the_import_check_sees_bookds_direct_imports():
    imports = top_level_imports(RUNTIME_SOURCES)
    assert {"boto3", "botocore", "click", "flask", "prometheus_client", "sqs_listener"} <= set(
        imports
    )
    assert providers("sqs_listener") == {"pysqslistener"}


def test_pyproject_names_every_runtime_package_bookd_imports_and_pins_none():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"]
    names = {normalize(re.split(r"[=<>!~;\s\[]", spec, maxsplit=1)[0]) for spec in specs}
    imported = set().union(*(module_providers(m) for m, _ in third_party_imports(RUNTIME_SOURCES)))
    assert imported <= names, f"missing from pyproject: {sorted(imported - names)}"
    assert {"click", "python-json-logger"} <= names
    assert names <= set(read_input(RUNTIME_IN)), "pyproject names a package the lock lacks"
    assert not [s for s in specs if "==" in s], "pins belong in requirements.in"


def test_the_runtime_lock_holds_the_build_backend_pyproject_asks_for():
    # The project is installed with --no-build-isolation, so its backend comes from the lock.
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    (minimum,) = [int(m) for r in requires for m in re.findall(r"^setuptools>=(\d+)$", r)]
    locked = by_name(RUNTIME_LOCK)["setuptools"].version
    assert int(locked.split(".")[0]) >= minimum, locked


# --- the Makefile --------------------------------------------------------------


def make_rule(target: str) -> tuple[list[str], list[str]]:
    """The prerequisites and recipe lines of TARGET's rule in the Makefile."""
    lines = MAKEFILE.read_text().splitlines()
    for n, line in enumerate(lines):
        if line.startswith(f"{target}:") and "=" not in line:
            recipe = []
            for follow in lines[n + 1 :]:
                if not follow.startswith("\t"):
                    break
                recipe.append(follow.strip())
            return line.split(":", 1)[1].split(), recipe
    raise AssertionError(f"no rule for {target} in the Makefile")


def test_make_rebuilds_the_venv_when_a_lock_changes_and_installs_from_the_dev_lock():
    prerequisites, recipe = make_rule("$(STAMP)")
    assert {"requirements.txt", "requirements-dev.txt"} <= set(prerequisites)
    installs = [line for line in recipe if line.startswith("$(PIP)")]
    assert "--require-hashes -r requirements-dev.txt" in installs[0]
    assert all(re.search(r"--no-deps --no-build-isolation -e \.(\s|$)", i) for i in installs[1:])


def test_make_lock_compiles_each_input_into_its_lock_with_hashes_from_pypi_alone():
    _, recipe = make_rule("lock")
    assert recipe == [
        "$(UV_COMPILE) $(LOCK_FLAGS) requirements.in -o requirements.txt",
        "$(UV_COMPILE) $(LOCK_FLAGS) requirements-dev.in -o requirements-dev.txt",
    ], "the runtime lock first: the dev input is constrained by it"
    joined = MAKEFILE.read_text().replace("\\\n", " ")  # continuation lines as one
    compile_line = re.search(r"^UV_COMPILE = (.+)$", joined, re.M)
    assert compile_line, "no UV_COMPILE in the Makefile"
    command = compile_line.group(1)
    for flag in ("--generate-hashes", "--no-config", "--python-version 3.11"):
        assert flag in command
    assert "index" not in command and "find-links" not in command, "PyPI, uv's default, only"
    unexported = re.search(r"^unexport (.+)$", joined, re.M)
    assert unexported, "uv's UV_* variables reach the lock command"
    hidden = set(unexported.group(1).split())
    assert {"UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_CONSTRAINT"} <= hidden
