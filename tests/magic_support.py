"""Helpers the unit and model tests of magic share."""

from __future__ import annotations

import pytest

from kokoro_lab.notebook import SpeakMagics
from tests.conftest import ipython_shell


@pytest.fixture(scope="module")
def ip():
    shell = ipython_shell()
    shell.config.SpeakMagics.warm_on_load = False  # tests hand it the session's synthesizer
    shell.run_line_magic("load_ext", "kokoro_lab")
    yield shell
    if "speak" in shell.magics_manager.magics["cell"]:
        shell.run_line_magic("unload_ext", "kokoro_lab")


@pytest.fixture
def magics(ip) -> SpeakMagics:
    return ip.magics_manager.registry["SpeakMagics"]


@pytest.fixture
def warm(magics, synth) -> SpeakMagics:
    magics._synth = synth
    yield magics
    magics.stop("test over")
    if magics.current is not None:
        magics.current.wait(30)


def run_error(ip, cell: str) -> BaseException | None:
    result = ip.run_cell(cell)
    return result.error_in_exec or result.error_before_exec


LONG = " ".join(["The first utterance is long enough to still be speaking."] * 6)
