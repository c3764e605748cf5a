"""Smoke test of an installed django-taskchan wheel (``nox -s smoke``, ``.ci/run``).

Run with the virtualenv's python, from a directory outside the checkout, after
installing Django and then the wheel (not editable).  Standard library only:

1. the install: taskchan is imported from site-packages, the Django version
   installed before it was kept, and none of the optional or reference-project
   packages came with it;
2. the wheel holds every migration, template, static file and Lua script the
   checkout has;
3. docs/quickstart.md, followed word for word in a new project: every block
   marked ``<!-- step: ... -->`` is run or written, against a redis-server this
   script starts; the worker must run both jobs the page sends;
4. the admin's pages render from the installed templates, the static files
   are found, and metrics_view, without the prometheus extra, names it.

Only the environment is not the quickstart's: the virtualenv is this one (the
steps that create and activate one are skipped), ``pip install
django-taskchan`` installs nothing (the wheel is already here), and the
server's port and Redis are free ones.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
QUICKSTART = CHECKOUT / "docs" / "quickstart.md"
STEP = re.compile(r"^<!-- step: (sh background|sh|append|write) ?(\S*) -->$")
FENCE = re.compile(r"^```(\S*)\s*$")
#: packages a plain install must not bring: the extras' and the reference project's
NOT_INSTALLED = ("celery", "kombu", "prometheus_client", "daphne", "psycopg", "dj_database_url", "hiredis")
#: what the wheel must carry besides modules, compared file by file with the checkout
PACKAGE_DATA = ("migrations/*.py", "templates/**/*.html", "static/**/*.*", "stores/lua/*.lua", "py.typed")
#: lines of the quickstart that set up the environment this script already runs in
SKIPPED = (re.compile(r"^python -m venv "), re.compile(r"^\. \S+/activate$"))
PIP_INSTALL = "pip install django-taskchan"
DEFAULT_SERVER = "127.0.0.1:8000"


def fail(message: str) -> None:
    print(f"smoke: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    fail(f"timed out after {timeout} s waiting for {what}")


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- 1 and 2: the install --------------------------------------------------------


def check_install(django: str) -> None:
    import django as django_module

    import taskchan

    location = Path(taskchan.__file__).resolve()
    # (The virtualenv itself may live inside the checkout, in .nox/.)
    if location.parent == CHECKOUT / "taskchan" or "site-packages" not in location.parts:
        fail(f"taskchan was imported from {location}, not from the wheel installed in site-packages")
    direct_url = json.loads(importlib.metadata.distribution("django-taskchan").read_text("direct_url.json") or "{}")
    if direct_url.get("dir_info", {}).get("editable"):
        fail("django-taskchan is installed editable, not from the wheel")
    installed = importlib.metadata.version("django-taskchan")
    if installed != taskchan.__version__:
        fail(f"the distribution says {installed}, taskchan.__version__ says {taskchan.__version__}")
    if not django_module.get_version().startswith(f"{django}."):
        fail(f"Django {django} was installed first, but Django {django_module.get_version()} is installed now")
    brought = [name for name in NOT_INSTALLED if importlib.util.find_spec(name) is not None]
    if brought:
        fail(f"a plain install brought packages it must not: {', '.join(brought)}")
    print(f"smoke: taskchan {installed} from {location.parent} on Django {django_module.get_version()}")


def check_package_data() -> None:
    import taskchan

    installed_root = Path(taskchan.__file__).resolve().parent
    source_root = CHECKOUT / "taskchan"
    for pattern in PACKAGE_DATA:
        expected = {p.relative_to(source_root) for p in source_root.glob(pattern) if "__pycache__" not in p.parts}
        present = {p.relative_to(installed_root) for p in installed_root.glob(pattern)}
        if not expected:
            fail(f"the checkout has no taskchan/{pattern}: is this script's pattern out of date?")
        missing = sorted(map(str, expected - present))
        if missing:
            fail(f"the wheel lacks taskchan/{pattern}: {', '.join(missing)}")
        print(f"smoke: {len(expected)} files of taskchan/{pattern} present")


# -- 3: the quickstart -------------------------------------------------------------


def quickstart_steps() -> list[tuple[str, str, str]]:
    """(kind, file, body) for every marked block of docs/quickstart.md, in order."""
    lines = QUICKSTART.read_text().splitlines()
    steps = []
    for i, line in enumerate(lines):
        match = STEP.match(line.strip())
        if not match:
            continue
        fence = i + 1
        if fence >= len(lines) or not FENCE.match(lines[fence]):
            fail(f"docs/quickstart.md:{i + 1}: a step marker must stand right above a code fence")
        end = next(j for j in range(fence + 1, len(lines)) if lines[j].rstrip() == "```")
        steps.append((match.group(1), match.group(2), "\n".join(lines[fence + 1 : end]) + "\n"))
    if not steps:
        fail("docs/quickstart.md has no <!-- step: ... --> blocks")
    return steps


class Quickstart:
    def __init__(self, workdir: Path, redis_url: str):
        self.workdir = workdir
        self.port = free_port()
        self.env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.background: list[subprocess.Popen] = []
        self.output: list[str] = []

    def command(self, line: str) -> str | None:
        """The quickstart's command as this script runs it, or None to skip it."""
        if any(pattern.match(line) for pattern in SKIPPED):
            return None
        if line == PIP_INSTALL:
            return None  # the wheel is installed already
        return line.replace(DEFAULT_SERVER, f"127.0.0.1:{self.port}")

    def run_sh(self, body: str, background: bool) -> None:
        for raw in body.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            command = self.command(line)
            if command is None:
                print(f"smoke: (skipped here) $ {line}")
                continue
            if background:
                if "runserver" in command and DEFAULT_SERVER not in line:
                    command += f" 127.0.0.1:{self.port}"
                print(f"smoke: (in the background) $ {command}")
                server = subprocess.Popen(  # noqa: S602 - the quickstart's own shell line
                    command, shell=True, cwd=self.workdir, env=self.env, start_new_session=True,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                self.background.append(server)
                wait_for(lambda: answers(self.port), 60, f"'{command}' to answer on port {self.port}")
                continue
            print(f"smoke: $ {command}")
            done = subprocess.run(  # noqa: S602 - the quickstart's own shell lines
                command, shell=True, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=180
            )
            sys.stdout.write(done.stdout)
            sys.stdout.write(done.stderr)
            if done.returncode != 0:
                fail(f"'{command}' exited with {done.returncode}")
            self.output.append(done.stdout + done.stderr)

    def write(self, kind: str, name: str, body: str) -> None:
        path = self.workdir / name
        if kind == "append":
            if not path.exists():
                fail(f"docs/quickstart.md appends to {name}, which the steps before did not create")
            path.write_text(path.read_text() + "\n\n" + body)
        else:
            path.write_text(body)
        print(f"smoke: {'appended to' if kind == 'append' else 'wrote'} {name}")

    def run(self) -> str:
        try:
            for kind, name, body in quickstart_steps():
                if kind.startswith("sh"):
                    self.run_sh(body, background=kind == "sh background")
                else:
                    self.write(kind, name, body)
        finally:
            for proc in self.background:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
        return "".join(self.output)


def check_quickstart(workdir: Path, redis_url: str) -> None:
    output = Quickstart(workdir, redis_url).run()
    for expected in (
        r"Hello, Ada! \(message [0-9a-f]{32}, attempt 1\)",
        r"Hello, Grace! \(message [0-9a-f]{32}, attempt 1\)",
        r"DEBUG taskchan\.jobs done channel=taskchan\.greetings message=[0-9a-f]{32} attempt=1 duration=",
        r"System check identified no issues",
    ):
        if not re.search(expected, output):
            fail(f"the quickstart's output has no line matching {expected!r}")
    print("smoke: the quickstart's worker ran both jobs")


# -- 4: admin pages and static files ------------------------------------------------

ADMIN_CHECK = """
from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import setup_test_environment

import taskchan
from taskchan.models import FailedMessage

setup_test_environment()
user = User.objects.create_superuser("smoke", "smoke@example.com", "smoke-password")
row = FailedMessage.objects.create(message_id="f" * 32, channel="taskchan.greetings", reason="exhausted",
                                   attempts=3, content={"name": "Ada"}, last_error_type="builtins.ValueError",
                                   last_error="smoke")
client = Client()
client.force_login(user)
for url in ("/admin/taskchan/failedmessage/", f"/admin/taskchan/failedmessage/{row.pk}/change/",
            "/admin/taskchan/failedmessage/groups/", "/admin/taskchan/queueoverview/"):
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert b"taskchan/admin.css" in response.content, url
print("admin pages rendered")

# The extras are not installed: what needs them says which one to install.
from taskchan import extras, metrics
from taskchan.exceptions import MissingExtra
assert not extras.installed("celery") and not extras.installed("prometheus")
metrics.processed("taskchan.greetings")  # counting without prometheus_client is a no-op
try:
    metrics.metrics_view(None)
except MissingExtra as exc:
    assert "pip install 'django-taskchan[prometheus]'" in str(exc), exc
else:
    raise AssertionError("metrics_view worked without prometheus_client")
print("the prometheus extra is named")
"""


def check_admin_and_static(workdir: Path, redis_url: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url}
    for command in (
        [sys.executable, "manage.py", "shell", "-c", ADMIN_CHECK],
        [sys.executable, "manage.py", "findstatic", "taskchan/admin.css", "taskchan/overview.js"],
    ):
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            fail(f"{' '.join(command[1:4])}... exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    print("smoke: the admin's pages render and its static files are found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--django", required=True, help="the Django feature release installed first, e.g. 5.2")
    args = parser.parse_args()
    check_install(args.django)
    check_package_data()
    workdir = Path(tempfile.mkdtemp(prefix="taskchan-smoke-"))
    redis_dir = Path(tempfile.mkdtemp(prefix="taskchan-smoke-redis-"))
    port = free_port()
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    redis = subprocess.Popen(
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(redis_dir), "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: answers(port), 10, "redis-server")
        redis_url = f"redis://127.0.0.1:{port}/0"
        check_quickstart(workdir, redis_url)
        check_admin_and_static(workdir, redis_url)
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(redis_dir, ignore_errors=True)
    print("smoke: passed")


if __name__ == "__main__":
    main()
