"""Indirect object identification prompts (Wang et al. 2022, https://arxiv.org/abs/2211.00593) with ABC corruption."""

from __future__ import annotations

import random

from engine.tasks.base import Example
from engine.tasks.sampling import fill, load_data


def _names() -> list[str]:
    names = load_data("names")
    return names["male"] + names["female"]


def sample_ioi(rng: random.Random, n_templates: int | None = None) -> Example:
    """One IOI prompt: "When B and A went to the store, B gave a drink to" -> " A".

    Half the prompts put the indirect object first (ABBA), half second (BABA). The corrupted prompt
    uses three unrelated names (ABC), so it carries no information about which name repeats.

    Args:
        rng: the seeded source of randomness.
        n_templates: use only the first `n_templates` templates (1 = IOI-t1); None = all.
    """
    data = load_data("ioi")
    templates = data["templates"][:n_templates] if n_templates else data["templates"]
    template = rng.choice(templates)
    io, s, a, b, c = rng.sample(_names(), 5)
    if rng.random() < 0.5:  # ABBA: the indirect object is mentioned first
        template = template.replace("[B] and [A]", "[A] and [B]", 1)
    slots = {"PLACE": rng.choice(data["places"]), "OBJECT": rng.choice(data["objects"])}
    clean = fill(template.replace("[A]", io).replace("[B]", s), slots)
    corrupt = fill(_abc(template, a, b, c), slots)
    return Example(clean=clean, corrupt=corrupt, answer=f" {io}", good=(f" {io}",), bad=(f" {s}",))


def sample_ioi_t1(rng: random.Random) -> Example:
    """IOI with the first template only (IOI-t1)."""
    return sample_ioi(rng, n_templates=1)


def _abc(template: str, a: str, b: str, c: str) -> str:
    """Fill the three name slots of `template` in order of appearance with three different names."""
    out = template
    for name in (a, b, c):
        first = min(i for i in (out.find("[A]"), out.find("[B]")) if i >= 0)
        out = out[:first] + name + out[first + 3:]
    return out
