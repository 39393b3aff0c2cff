"""Greater-Than prompts (Hanna et al. 2023, https://arxiv.org/abs/2305.00586): "... from the year 1743 to 17"."""

from __future__ import annotations

import random

from engine.tasks.base import Example
from engine.tasks.sampling import fill, load_data

YEARS = tuple(f"{y:02d}" for y in range(100))  # every two-digit completion


def sample_greater_than(rng: random.Random) -> Example:
    """One prompt; good = the two-digit years after the start year, bad = the others.

    The corrupted prompt starts in year "01" of the same century, so (almost) every year is greater.
    The answer is one year drawn uniformly from the greater ones.
    """
    data = load_data("greater_than")
    lo, hi = data["start_range"]
    start = rng.randint(lo, hi)
    slots = {"NOUN": rng.choice(data["nouns"]), "CENTURY": rng.choice(data["centuries"])}
    clean = fill(data["template"], {**slots, "START": f"{start:02d}"})
    corrupt = fill(data["template"], {**slots, "START": data["corrupt_start"]})
    good, bad = YEARS[start + 1:], YEARS[: start + 1]
    return Example(clean=clean, corrupt=corrupt, answer=rng.choice(good), good=good, bad=bad)
