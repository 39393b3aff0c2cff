"""Gendered pronoun prompts (Mathwin et al. 2023): "So Evan is a really great friend, isn't" -> " he"."""

from __future__ import annotations

import random

from engine.tasks.base import Example
from engine.tasks.sampling import fill, load_data


def sample_gendered_pronoun(rng: random.Random) -> Example:
    """One prompt; the corrupted prompt swaps the name for one of the other gender (and pronoun)."""
    data, names = load_data("gendered_pronoun"), load_data("names")
    gender = rng.choice(("male", "female"))
    other = "female" if gender == "male" else "male"
    slots = {"ADJ": rng.choice(data["adjectives"]), "NOUN": rng.choice(data["nouns"])}
    template = rng.choice(data["templates"])
    clean = fill(template, {**slots, "NAME": rng.choice(names[gender])})
    corrupt = fill(template, {**slots, "NAME": rng.choice(names[other])})
    right, wrong = data["pronouns"][gender], data["pronouns"][other]
    return Example(clean=clean, corrupt=corrupt, answer=right, corrupt_answer=wrong, good=(right,), bad=(wrong,))
