"""Which prompts the embedded models never train on: one in ten, by CRC-32 of the prompt's key."""

from __future__ import annotations

import zlib


def heldout_key(task: str, prompt: str) -> str:
    """The text that decides whether a prompt is held out.

    Boolean prompts are keyed by their query expression alone, so that a held-out expression is
    never seen in training, neither as a query nor as a worked example of a few-shot prompt.
    """
    if task.startswith("boolean"):
        return prompt.rsplit(" : ", 1)[-1].rsplit(" . ", 1)[-1].removesuffix(" is")
    return prompt


def is_heldout(task: str, prompt: str) -> bool:
    """True for the held-out tenth of the prompts of `task`."""
    return zlib.crc32(heldout_key(task, prompt).encode("utf-8")) % 10 == 0
