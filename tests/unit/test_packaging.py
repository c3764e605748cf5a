"""The package's metadata agrees with itself: one version, the supported Django x Python
pairs the same in pyproject.toml's classifiers, noxfile.py's matrix and docs/installation.md,
only the library's own dependencies, and the README's first lines."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import tomllib

import taskchan
from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def supported() -> dict[str, tuple[str, ...]]:
    """noxfile.SUPPORTED, read without importing noxfile (it adjusts PATH on import)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "SUPPORTED" for t in targets):
                return ast.literal_eval(node.value)
    raise AssertionError("noxfile.py has no SUPPORTED")


def test_the_version_is_defined_once():
    assert "version" not in PROJECT and PROJECT["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "taskchan.__version__"}
    assert importlib.metadata.version("django-taskchan") == taskchan.__version__
    assert f"## {taskchan.__version__} " in (ROOT / "CHANGELOG.md").read_text()


def test_classifiers_python_bound_and_django_range_match_the_matrix():
    matrix = supported()
    djangos = sorted(matrix, key=lambda v: tuple(map(int, v.split("."))))
    pythons = sorted({p for ps in matrix.values() for p in ps}, key=lambda v: tuple(map(int, v.split("."))))
    classifiers = PROJECT["classifiers"]
    assert sorted(c.rsplit(" :: ", 1)[1] for c in classifiers if c.startswith("Framework :: Django :: ")) == djangos
    assert sorted(
        c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ) == pythons
    assert PROJECT["requires-python"] == f">={pythons[0]}"
    # No cap below the next major Django.
    assert f"Django>={djangos[0]},<{int(djangos[-1].split('.')[0]) + 1}" in PROJECT["dependencies"]


def test_the_installation_page_has_the_matrix_as_its_table():
    text = (ROOT / "docs" / "installation.md").read_text()
    rows = dict(re.findall(r"^\| (\d\.\d)(?: LTS)? \| ([\d., ]+) \| supported \|$", text, re.MULTILINE))
    assert {django: tuple(p.strip() for p in pythons.split(",")) for django, pythons in rows.items()} == supported()


def test_a_plain_install_brings_only_what_the_library_needs():
    names = {re.split(r"[<>=~!\[ ]", requirement, maxsplit=1)[0].lower() for requirement in PROJECT["dependencies"]}
    assert names == {"django", "channels", "channels-redis", "redis", "tenacity", "cronsim"}
    assert set(PROJECT["optional-dependencies"]) == {"celery", "prometheus", "encryption"}
    # The reference project's and the tests' packages are dependency groups: not in the wheel's metadata.
    metadata = importlib.metadata.metadata("django-taskchan")
    assert set(metadata.get_all("Provides-Extra")) == {"celery", "prometheus", "encryption"}
    required = " ".join(metadata.get_all("Requires-Dist"))
    for reference_only in ("daphne", "psycopg", "dj-database-url", "pytest", "playwright"):
        assert reference_only not in required


def test_every_extra_is_one_the_code_knows():
    from taskchan import extras

    assert set(extras.EXTRAS) == set(PROJECT["optional-dependencies"])
    for name, extra in extras.EXTRAS.items():
        (requirement,) = PROJECT["optional-dependencies"][name]
        distribution = re.split(r"[<>=~!\[ ]", requirement, maxsplit=1)[0]
        assert importlib.util.find_spec(extra.module) is not None, (name, distribution)


def test_the_readme_opens_with_pip_install_and_keeps_its_two_command_quick_start():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", readme, re.DOTALL).group(1)
    assert first_block.strip() == "pip install django-taskchan"
    assert readme.index("pip install django-taskchan") < 200
    quick_start = readme.split("## Quick start", 1)[1]
    commands = re.search(r"```sh\n(.*?)```", quick_start, re.DOTALL).group(1)
    assert [line.split("#")[0].strip() for line in commands.strip().splitlines()] == ["make run", "make test"]


def test_the_quickstart_is_a_sequence_the_smoke_test_can_follow():
    spec = importlib.util.spec_from_file_location("smoke", ROOT / "tests" / "package" / "smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)

    steps = smoke.quickstart_steps()

    assert [(kind, name) for kind, name, _ in steps] == [
        ("sh", ""),
        ("append", "mysite/settings.py"),
        ("write", "shop/consumers.py"),
        ("write", "shop/views.py"),
        ("write", "mysite/urls.py"),
        ("sh", ""),
        ("sh", ""),
        ("sh background", ""),
        ("sh", ""),
        ("sh", ""),
    ]
    assert "pip install django-taskchan" in steps[0][2] and "django-admin startproject mysite ." in steps[0][2]
    assert "runworker 'taskchan.*' --burst -v 2" in steps[-1][2]
    for _kind, name, body in steps:
        if name.endswith(".py"):
            compile(body, name, "exec")
