"""The deployment configs in ``worker_configs/``, each checked by its own tool.

- the systemd units by ``systemd-analyze verify`` (it runs in this container:
  it loads the units offline, without a running systemd, and reports unknown
  keys and ExecStart binaries that do not exist; the ``/srv/taskchan``
  placeholder is replaced by this checkout so the binaries are the real ones);
- ``supervisord.conf`` by supervisor's own parser (``ServerOptions.realize``,
  what ``supervisord -c`` runs before it starts anything), in the Python that
  runs ``/usr/bin/supervisord``;
- the nginx site by ``nginx -t`` inside a minimal nginx.conf in a temp prefix;
- the Procfile's commands are looked up in the virtualenv and ``manage.py``.

The last test boots nginx + daphne + a runworker from these files on loopback
and sends a websocket echo and a job through nginx.
"""

from __future__ import annotations

import getpass
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.conftest import ARTIFACTS, ROOT, accepts, free_port, subprocess_env, wait_for
from tests.integration.test_devserver import Client

CONFIGS = ROOT / "worker_configs"
VENV_BIN = Path(sys.executable).parent
PLACEHOLDER_ROOT = "/srv/taskchan"
DAPHNE_PORT = "127.0.0.1:8001"
#: TASKCHAN_SHUTDOWN_GRACE's default: stop timeouts of workers must be longer
SHUTDOWN_GRACE = 30


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        # A missing tool fails the test rather than skipping it: `make test`
        # runs .ci/services, which installs it.
        pytest.fail(f"{binary} is not installed: run `bash .ci/services` (make test does)")
    return path


def _procfile() -> dict[str, str]:
    entries = {}
    for line in (CONFIGS / "Procfile").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        assert sep and re.fullmatch(r"[A-Za-z0-9_-]+", name), f"not a Procfile line: {line!r}"
        entries[name] = command.strip()
    return entries


# -- systemd -------------------------------------------------------------------


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    analyze = _need("systemd-analyze")
    for name in ("daphne.service", "taskchan-worker@.service", "celery-worker.service"):
        text = (CONFIGS / name).read_text().replace(PLACEHOLDER_ROOT, str(ROOT))
        (tmp_path / name).write_text(text)
    units = ["daphne.service", "taskchan-worker@thumbnails.service", "celery-worker.service"]

    result = subprocess.run(
        [analyze, "verify", *(f"./{u}" for u in units)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    # Unknown keys are only warned about (exit status 0): any output about our units is a failure.
    ours = [line for line in result.stderr.splitlines() if ".service" in line]
    assert ours == [], result.stderr


def test_systemd_units_restart_and_outlast_the_shutdown_grace():
    for name in ("daphne.service", "taskchan-worker@.service", "celery-worker.service"):
        text = (CONFIGS / name).read_text()
        assert re.search(r"^Restart=always$", text, re.M), name
        assert re.search(r"^KillSignal=SIGTERM$", text, re.M), name
        assert PLACEHOLDER_ROOT in text, name
    worker = (CONFIGS / "taskchan-worker@.service").read_text()
    assert int(re.search(r"^TimeoutStopSec=(\d+)$", worker, re.M).group(1)) > SHUTDOWN_GRACE
    assert "EnvironmentFile=/etc/taskchan/workers/%i.env" in worker
    assert "runworker $TASKCHAN_CHANNELS" in worker


# -- supervisord ---------------------------------------------------------------

_PARSE = """
import json, sys
from supervisor.options import ServerOptions
options = ServerOptions()
options.realize(args=["-c", sys.argv[1]])
print(json.dumps({
    p.name: {"group": g.name, "command": p.command, "directory": p.directory,
             "stopsignal": int(p.stopsignal), "stopwaitsecs": p.stopwaitsecs,
             "autorestart": p.autorestart.__name__ if isinstance(p.autorestart, type) else str(p.autorestart)}
    for g in options.process_group_configs for p in g.process_configs
}))
"""


def test_supervisord_conf_parses_with_supervisors_own_parser(tmp_path):
    supervisord = _need("supervisord")
    shebang = Path(supervisord).read_text(errors="replace").splitlines()[0]
    python = shebang.removeprefix("#!").split()[0]
    text = (
        (CONFIGS / "supervisord.conf").read_text()
        .replace(PLACEHOLDER_ROOT, str(ROOT))
        .replace("/var/log/supervisor", str(tmp_path))
        .replace("/run/", f"{tmp_path}/")
        # the parser checks that the user exists
        .replace("user=taskchan", f"user={getpass.getuser()}")
    )
    conf = tmp_path / "supervisord.conf"
    conf.write_text(text)

    result = subprocess.run([python, "-c", _PARSE, str(conf)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    programs = json.loads(result.stdout)
    assert set(programs) == {"daphne", "taskchan-default-0", "taskchan-default-1", "taskchan-thumbnails", "celery"}
    for name, program in programs.items():
        argv = shlex.split(program["command"])
        assert Path(argv[0]).is_file(), f"{name}: {argv[0]} does not exist"
        assert program["directory"] == str(ROOT)
        assert program["stopsignal"] == signal.SIGTERM
        assert program["autorestart"] == "RestartUnconditionally"
        if "runworker" in argv:
            assert program["group"] == "taskchan-workers"
            assert program["stopwaitsecs"] > SHUTDOWN_GRACE, name


# -- nginx ---------------------------------------------------------------------


def _nginx_prefix(tmp_path: Path, listen_port: int, daphne_port: int) -> Path:
    site = (
        (CONFIGS / "nginx-taskchan.conf").read_text()
        .replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
        .replace(DAPHNE_PORT, f"127.0.0.1:{daphne_port}")
        .replace(PLACEHOLDER_ROOT, str(ROOT))
    )
    assert f"listen 127.0.0.1:{listen_port};" in site and f"127.0.0.1:{daphne_port}" in site
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "site.conf").write_text(site)
    temps = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n"
        f"events {{ worker_connections 64; }}\n"
        f"http {{\n    access_log {prefix}/access.log;\n{temps}\n    include {prefix}/site.conf;\n}}\n"
    )
    return prefix


def _nginx_args(prefix: Path) -> list[str]:
    return [_need("nginx"), "-p", f"{prefix}/", "-e", f"{prefix}/error.log", "-c", f"{prefix}/nginx.conf"]


def test_nginx_site_passes_nginx_t(tmp_path):
    prefix = _nginx_prefix(tmp_path, free_port(), free_port())

    result = subprocess.run([*_nginx_args(prefix), "-t"], capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


# -- Procfile ------------------------------------------------------------------


def test_procfile_commands_exist():
    entries = _procfile()
    assert set(entries) == {"web", "worker", "celery"}
    for name, command in entries.items():
        argv = shlex.split(command)
        assert (VENV_BIN / argv[0]).is_file() or shutil.which(argv[0]), f"{name}: {argv[0]} not found"
        if argv[0] == "python":
            assert argv[1] == "manage.py"
            help_ = subprocess.run(
                [sys.executable, "manage.py", "help", argv[2]],
                cwd=ROOT, env=subprocess_env(None), capture_output=True, text=True, timeout=60,
            )
            assert help_.returncode == 0, f"{name}: manage.py {argv[2]}: {help_.stderr}"
    assert "$PORT" in entries["web"]
    assert shlex.split(entries["worker"])[2:] == ["runworker", "taskchan.*"]
    celery = subprocess.run(
        [str(VENV_BIN / "celery"), "-A", "project", "worker", "--help"],
        cwd=ROOT, env=subprocess_env(None), capture_output=True, text=True, timeout=60,
    )
    assert celery.returncode == 0, celery.stderr


# -- all together on loopback ----------------------------------------------------




class _Proc:
    def __init__(self, name: str, args, env, tag: str):
        self.name = name
        self.log_path = ARTIFACTS / f"worker-configs-{tag}-{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_port(self, port: int):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            return accepts(port)

        wait_for(up, timeout=30, message=f"{self.name} on port {port}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@pytest.mark.django_db(transaction=True)
def test_nginx_daphne_and_a_worker_from_these_files_serve_echo_and_jobs(tmp_path, redis_url, request):
    nginx_port, daphne_port = free_port(), free_port()
    prefix = _nginx_prefix(tmp_path, nginx_port, daphne_port)
    procfile = _procfile()
    tag = f"{request.node.name[:40]}-{nginx_port}"
    env = subprocess_env(redis_url, PORT=daphne_port, PATH=f"{VENV_BIN}:{subprocess_env(None)['PATH']}")
    # On loopback only: the Procfile binds all interfaces, as a PaaS expects.
    web = procfile["web"].replace("-b 0.0.0.0", "-b 127.0.0.1")
    assert web != procfile["web"]

    processes = []
    try:
        daphne = _Proc("daphne", ["sh", "-c", f"exec {web}"], env, tag)
        processes.append(daphne)
        worker = _Proc("worker", ["sh", "-c", f"exec {procfile['worker']}"], env, tag)
        processes.append(worker)
        nginx = _Proc("nginx", _nginx_args(prefix), env, tag)
        processes.append(nginx)
        daphne.wait_port(daphne_port)
        nginx.wait_port(nginx_port)

        with connect(
            f"ws://127.0.0.1:{nginx_port}/chat/",
            origin=f"http://127.0.0.1:{nginx_port}",
            open_timeout=10,
            close_timeout=5,
        ) as ws:
            ws.send("through nginx")
            assert ws.recv(timeout=10) == "You said: through nginx"

        client = Client(f"http://127.0.0.1:{nginx_port}")
        status, _headers, page = client.get("/")
        assert status == 200, page
        # /metrics stays off the public side; daphne itself still serves it to a local scraper.
        for path in ("/metrics", "/metrics/", "/metrics?format=text"):
            assert client.get(path)[0] == 404, path
        status, _headers, metrics = Client(f"http://127.0.0.1:{daphne_port}").get("/metrics")
        assert status == 200 and b"taskchan_messages_sent" in metrics, metrics[:300]
        status, _headers, body = client.post_json("/jobs/", json.dumps({"text": "via nginx"}).encode())
        assert status == 202, body
        message_id = json.loads(body)["id"]

        def done():
            if worker.proc.poll() is not None:
                raise AssertionError(f"runworker exited:\n{worker.output()}")
            status, _headers, body = client.get(f"/jobs/{message_id}/")
            assert status == 200, body
            result = json.loads(body)
            return result if result["status"] == "done" else None

        result = wait_for(done, timeout=30, interval=0.2, message=f"job {message_id} to be done")
        assert result["result"] == "XNIGN AIV"
        # The runworker process ran it (sh exec'd it, so its pid is the Popen's).
        assert result["worker_pid"] == worker.proc.pid
        # nginx logs a request after answering it: wait for the line.
        access_log = wait_for(
            lambda: (text := (prefix / "access.log").read_text()) and f"/jobs/{message_id}/" in text and text,
            timeout=10,
            message="nginx to log the job's requests",
        )
        assert "GET /chat/" in access_log
    finally:
        for proc in reversed(processes):
            proc.stop()
