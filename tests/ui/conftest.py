"""Browser tests: a real JupyterLab on loopback, driven in Debian's Chromium by Playwright.

Playwright's own browser download does not work here, so the tests use the system Chromium
(``KOKORO_LAB_CHROMIUM`` overrides the path). JupyterLab runs with throw-away settings,
workspaces and root directory, so the tests neither read nor change the user's setup.
Screenshots go to ``artifacts/ui/`` (kept by CI).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "ui"
CHROMIUM = os.environ.get("KOKORO_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage",
]
# JupyterLab settings: no news/update toasts, and no cell windowing (off-screen outputs would
# be detached from the DOM, which is fine for users but makes page assertions flaky).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.ui)
            item.add_marker(pytest.mark.model)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab server and the notebooks the tests put in its root."""

    def __init__(self, url: str, token: str, root: Path):
        self.url, self.token, self.root = url, token, root

    def notebook(self, name: str, cells: list[str]) -> str:
        """Write a notebook of code cells; return the URL that opens it in JupyterLab."""
        nb = {
            "cells": [{"cell_type": "code", "execution_count": None, "metadata": {},
                       "outputs": [], "source": source} for source in cells],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5,
        }
        (self.root / name).write_text(json.dumps(nb))
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    base = tmp_path_factory.mktemp("lab")
    root, settings = base / "root", base / "settings"
    root.mkdir()
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
           "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "rt")}
    log = (base / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--allow-root"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    instance = Lab(f"http://127.0.0.1:{port}", token, root)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                instance.api("status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError("JupyterLab did not start:\n"
                                       + (base / "lab.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield instance
    finally:
        for kernel in instance.api("kernels") if server.poll() is None else []:
            instance.api(f"kernels/{kernel['id']}", method="DELETE")
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="session")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def launch(playwright_instance):
    """Start Chromium. ``autoplay=False`` asks for the desktop rule (audio needs a recent user
    gesture); headless Chromium ignores it for Web Audio, hence the test's own policy script."""

    def start(autoplay: bool):
        policy = "no-user-gesture-required" if autoplay else "user-gesture-required"
        return playwright_instance.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--autoplay-policy={policy}"])

    return start


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
