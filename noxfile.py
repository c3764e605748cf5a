"""The test matrix: every supported Django on every Python it supports.

    nox -l                                     list the sessions
    nox -s "compat(django='5.2', python='3.11')"   one pair: the compatibility subset
    nox -s compat -p 3.13                      every Django on Python 3.13
    nox -s compat -- tests/admin -x            other pytest arguments instead of the subset
    nox -s package                             build the sdist and wheel, twine check them
    nox -s "smoke(django='5.2', python='3.11')"    the built wheel in a clean virtualenv

``make test`` runs the whole suite on the newest pair (the project's .venv);
``.ci/run`` runs it, the compatibility subset on the oldest pair (Django 5.2,
Python 3.11) and the wheel smoke test there; ``make matrix`` runs every pair.  Interpreters come from pyenv where it is installed (the newest
installed patch release of each minor version), else from PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
DIST = ROOT / "dist"
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

#: each supported Django release and the Pythons it supports among ours
#: (Django 6 needs 3.12 or newer).  Keep pyproject.toml's classifiers and
#: docs/installation.md's table in step (tests/unit/test_packaging.py checks).
SUPPORTED = {
    "5.2": ("3.11", "3.12", "3.13"),
    "6.0": ("3.12", "3.13"),
    "6.1": ("3.12", "3.13"),
}
PAIRS = [(django, python) for django, pythons in SUPPORTED.items() for python in pythons]

#: the compatibility subset: what can differ between Django and Python
#: releases.  Unit and store-contract tests, the admin (each Django's admin
#: templates and CSS; its browser flows are left to make test, the layout test
#: stays), worker processes, and the failure windows where a worker is killed
#: holding work (signals, threads and asyncio on that Python).  Left to make
#: test, which runs everything on the newest pair: the soaks, the send-side and
#: retry/expiry windows, the crash loop and garbage tests (the same code paths
#: as the windows kept, at many minutes), the 10,000-row bulk retry, the
#: store and settings tests on a Redis Cluster, and the reference project's
#: settings-from-the-environment tests.  ``nox -s compat --
#: PATHS`` runs any tests on any pair.
COMPAT_TESTS = (
    "tests/unit",
    "tests/contract",
    "tests/admin",
    "tests/integration/test_worker_process.py",
    "tests/failure_windows/test_w2_pop_before_lease.py",
    "tests/failure_windows/test_w3_while_running.py",
    "tests/failure_windows/test_w4_before_ack.py",
    "tests/failure_windows/test_redis_restart.py",
    "--deselect=tests/admin/test_bulk_retry.py::test_bulk_retry_of_10000_rows_is_one_pipeline",
    "--deselect=tests/unit/test_settings_env.py",
    # Redis Cluster layouts (126 tests, a minute here) are Redis's, not Django's or Python's: make test runs them
    "-k", "(not test_browser or test_the_pages_fit_common_desktop_widths) and not cluster",
    # the slowest tests (failure windows) come last: let idle workers take them
    "--dist=worksteal",
)

# uv makes the virtualenvs and installs into them in seconds; plain venv and pip where it is missing.
nox.options.default_venv_backend = "uv|venv"
nox.options.download_python = "never"  # pyenv's interpreters, or the ones on PATH: nothing fetched
nox.options.sessions = ["compat"]


def _pyenv_on_path() -> None:
    """Put pyenv's interpreters for our Pythons first on PATH.

    pyenv's shims answer ``python3.11`` only for the versions .python-version
    selects; the interpreters themselves live in ``$(pyenv root)/versions``.
    """
    if not shutil.which("pyenv"):
        return
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    installed = sorted(
        (p for p in (root / "versions").glob("3.*") if (p / "bin").is_dir()),
        key=lambda p: tuple(int(n) if n.isdigit() else -1 for n in p.name.split(".")),
    )
    found = []
    for minor in sorted({python for _django, python in PAIRS}):
        matches = [p for p in installed if p.name.startswith(f"{minor}.") and p.name[len(minor) + 1 :].isdigit()]
        if matches:
            found.append(str(matches[-1] / "bin"))
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_pyenv_on_path()


def _django(version: str) -> str:
    """The newest release of one Django feature release: 5.2 -> Django~=5.2.0."""
    return f"Django~={version}.0"


@nox.session
@nox.parametrize(("django", "python"), PAIRS)
def compat(session: nox.Session, django: str) -> None:
    """The compatibility subset (or the pytest arguments given) on one Django x Python pair."""
    session.install(
        "-e", ".[celery,prometheus]",
        *nox.project.dependency_groups(PYPROJECT, "project", "test"),
        _django(django),
    )
    session.run("python", "-m", "django", "--version")
    session.run("python", "-m", "pytest", "-n", "4", "-p", "no:cacheprovider", *(session.posargs or COMPAT_TESTS))


@nox.session(python="3.12")
def package(session: nox.Session) -> None:
    """Build the sdist and the wheel into dist/ and check them with twine."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "dev"))
    shutil.rmtree(DIST, ignore_errors=True)
    session.run("python", "-m", "build", "--installer", "uv", "--outdir", str(DIST), str(ROOT))
    session.run("python", "-m", "twine", "check", "--strict", *map(str, sorted(DIST.iterdir())))


@nox.session(default=False)
@nox.parametrize(("django", "python"), PAIRS)
def smoke(session: nox.Session, django: str) -> None:
    """Install the built wheel, not editable, where that Django is already installed; follow
    docs/quickstart.md in a new project; check what the wheel holds (tests/package/smoke.py)."""
    wheels = sorted(DIST.glob("django_taskchan-*.whl"))
    if not wheels:
        session.error("no wheel in dist/: run `nox -s package` first")
    session.install(_django(django))
    session.install(str(wheels[-1]))
    tmp = Path(session.create_tmp()) / "smoke"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with session.chdir(tmp):  # not the checkout, whose taskchan/ would shadow the installed one
        session.run("python", str(ROOT / "tests" / "package" / "smoke.py"), "--django", django)
