"""Helpers the unit and model tests of studio share."""

from __future__ import annotations

PCM_STEP = 1 / 32767  # the player holds what pages get: 16-bit PCM


def words(text: str) -> list[str]:
    return text.split()
