"""Helpers the unit and model tests of split share."""

from __future__ import annotations

PHRASE = "Hello there, how are you today?"
