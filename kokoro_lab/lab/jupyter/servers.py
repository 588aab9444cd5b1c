"""The three front ends a notebook user listens in — JupyterLab, Notebook 7 and Voila — started
on loopback with throw-away settings, for the browser tests and the end-to-end benchmark.

Each server runs in its own temporary root, so tests and benchmarks neither read nor change the
user's setup. Chromium is Debian's (``KOKORO_LAB_CHROMIUM`` overrides the path): Playwright's own
browser download does not work offline.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

CHROMIUM = os.environ.get("KOKORO_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage",
]
# JupyterLab/Notebook settings: no news/update toasts, and no cell windowing (off-screen outputs
# would be detached from the DOM, which is fine for users but makes page assertions flaky).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
START_TIMEOUT_S = 120


def notebook_json(cells: list[str]) -> dict:
    """A notebook of code cells (a cell starting with ``#md`` is markdown)."""
    def cell(source: str) -> dict:
        if source.startswith("#md\n"):
            return {"cell_type": "markdown", "metadata": {}, "source": source[4:]}
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                "source": source}

    return {
        "cells": [cell(source) for source in cells],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running Jupyter front end and the notebooks put in its root."""

    def __init__(self, kind: str, url: str, token: str, root: Path):
        self.kind, self.url, self.token, self.root = kind, url, token, root

    def notebook(self, name: str, cells: list[str]) -> str:
        """Write a notebook; return the URL that opens it in this front end."""
        (self.root / name).write_text(json.dumps(notebook_json(cells)))
        return self.url_for(name)

    def url_for(self, name: str) -> str:
        if self.kind == "lab":
            return f"{self.url}/lab/tree/{name}?token={self.token}&reset"
        if self.kind == "notebook":
            return f"{self.url}/notebooks/{name}?token={self.token}"
        return f"{self.url}/voila/render/{name}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        for kernel in self.api("kernels") or []:
            self.api(f"kernels/{kernel['id']}", method="DELETE")


def _command(kind: str, port: int, token: str, root: Path) -> list[str]:
    common = ["--no-browser", f"--port={port}"]
    if kind == "voila":
        return [sys.executable, "-m", "voila", *common, "--Voila.ip=127.0.0.1",
                f"--Voila.root_dir={root}", f"--Voila.token={token}",
                "--show_tracebacks=True", "--VoilaConfiguration.file_allowlist=['.*']"]
    module = "jupyterlab" if kind == "lab" else "notebook"
    return [sys.executable, "-m", module, *common, "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=", "--allow-root",
            # window.jupyterapp: the page driver reads the notebook's own kernel from it
            # (Notebook 7 has its own application class, and its own name for the setting)
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",
            # Unix sockets in the server's own runtime folder: TCP ports picked at the same
            # moment by two servers (parallel test workers) can collide and kill a kernel
            "--KernelManager.transport=ipc"]


@contextmanager
def jupyter_server(kind: str = "lab", base: Path | None = None):
    """Start ``kind`` ("lab", "notebook" or "voila") on loopback; yield a :class:`Server`."""
    if kind not in ("lab", "notebook", "voila"):
        raise ValueError(f"unknown front end {kind!r}: lab, notebook or voila")
    with tempfile.TemporaryDirectory(prefix=f"kokoro-{kind}-") as scratch:
        base = base or Path(scratch)
        root, settings = base / "root", base / "settings"
        root.mkdir(parents=True, exist_ok=True)
        for name, values in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        port, token = free_port(), secrets.token_hex(16)
        env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings),
               "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
               "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "rt")}
        log_path = base / f"{kind}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(_command(kind, port, token, root), env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
            server = Server(kind, f"http://127.0.0.1:{port}", token, root)
            try:
                _wait_until_up(server, process, log_path)
                yield server
            finally:
                if process.poll() is None:
                    with suppress(OSError):
                        server.shutdown_kernels()
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                _keep_log(log_path, f"{kind}-{port}.log")


def _keep_log(log_path: Path, name: str) -> None:
    """Copy the server's log (its kernels' output too) into $KOKORO_LAB_SERVER_LOGS, if set:
    the browser tests keep them beside their screenshots."""
    folder = os.environ.get("KOKORO_LAB_SERVER_LOGS")
    if folder and log_path.exists():
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(log_path.read_text(errors="replace"))


def _wait_until_up(server: Server, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            server.api("status")
            return
        except urllib.error.HTTPError:
            return  # it answers (Voila has no /api/status): it is up
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{server.kind} did not start:\n"
                                   + log_path.read_text()[-3000:]) from None
            time.sleep(0.5)


def launch_chromium(playwright, autoplay: bool = True):
    """Debian's Chromium; ``autoplay=False`` asks for the desktop rule (audio needs a recent
    user gesture) — headless Chromium ignores it for Web Audio, hence the tests' own policy
    script (see tests/ui/test_player_browser.py)."""
    policy = "no-user-gesture-required" if autoplay else "user-gesture-required"
    return playwright.chromium.launch(executable_path=CHROMIUM,
                                      args=[*CHROMIUM_ARGS, f"--autoplay-policy={policy}"])
