"""The client as one who has only it installs it: `pip install` of the repository, offline,
used from elsewhere (README, "Python client and terminal chat")."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.servers import ROOT

pytestmark = pytest.mark.timeout(120)

SERVER_PACKAGES = ("chat", "files", "config")
REQUIRES = re.compile(r"^Requires-Dist: ([A-Za-z0-9_.-]+)", re.MULTILINE)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository pip-installed into a folder of its own, with the venv's setuptools
    (requirements-dev.txt) and no index: the folder holds what a user gets."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.fail("the build backend is missing: pip install -r requirements-dev.txt")
    # From a copy of what the build reads, so that the build's own files (build/,
    # *.egg-info) are not left in the repository.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "chatclient", source / "chatclient", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site")
    offline = ["--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target)]
    pip = [sys.executable, "-m", "pip", "install", *offline, str(source)]
    built = subprocess.run(pip, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return target


def run_there(target: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """`command` from a folder outside the repository, with only `target` added to the
    venv's own path: neither the repository nor its server packages are importable."""
    elsewhere = target.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=30)


def test_the_client_installs_alone(installed: Path):
    """The distribution is the `chatclient` package, its metadata and its script: none
    of the server's packages."""
    probe = "import importlib.util, chatclient; print(chatclient.__file__); "
    probe += f"print([m for m in {SERVER_PACKAGES!r} if importlib.util.find_spec(m)])"
    ran = run_there(installed, sys.executable, "-c", probe)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [str(installed / "chatclient" / "__init__.py"), "[]"]
    top = {path.name for path in installed.iterdir()} - {"__pycache__"}
    assert {name for name in top if not name.endswith(".dist-info")} == {"chatclient", "bin"}
    metadata = next(installed.glob("*.dist-info")).joinpath("METADATA").read_text()
    requires = {match[1].lower() for match in REQUIRES.finditer(metadata)}
    assert requires == {"cryptography", "websockets", "prompt_toolkit"}


def test_the_cli_runs_as_its_script_and_as_a_module(installed: Path):
    """`chatclient --help` (the console script) and `python -m chatclient --help` both
    work from the installed copy, each naming itself in its usage line."""
    script = run_there(installed, str(installed / "bin" / "chatclient"), "--help")
    assert script.returncode == 0, script.stderr
    assert script.stdout.startswith("usage: chatclient ") and "Exit status" in script.stdout
    module = run_there(installed, sys.executable, "-m", "chatclient", "--help")
    assert module.returncode == 0, module.stderr
    assert module.stdout.startswith("usage: python -m chatclient ")


def test_the_installed_client_is_typed_for_its_users(installed: Path):
    """The library is typed (mypy checks it here): a bot author's mypy uses its hints
    only when the installed package carries the PEP 561 marker, else it is `Any` with
    "missing library stubs or py.typed marker"."""
    assert (installed / "chatclient" / "py.typed").is_file()


def test_a_misspelt_option_is_a_type_error_in_the_bot_that_passes_it(installed: Path, tmp_path: Path):
    """`ChatClient.connect(url, **options)` names its options (`ClientOptions`): a bot's
    mypy flags `keep_alive=` and passes `keepalive=`, as for `ChatClient(...)` itself."""
    bot = tmp_path / "bot.py"
    bot.write_text(
        "from chatclient import ChatClient\n\n\n"
        "async def main() -> None:\n"
        '    await ChatClient.connect("ws://host/ws/", keepalive=5, reconnect_timeout=float("inf"))\n'
        '    await ChatClient.connect("ws://host/ws/", keep_alive=5)\n'
    )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--config-file", os.devnull, str(bot)],
        env={**os.environ, "MYPYPATH": str(installed)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and 'bot.py:6: error: Unexpected keyword argument "keep_alive"' in errors[0], (
        checked.stdout
    )
