"""Streamlit blocks of the Prompt lab: one prompt's tokens, twin, predictions and logit difference."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from .prompts import Prediction, token_table
from .text import literal


def prompt_detail(p: Prediction) -> None:
    """Inside a prompt's expander: where its twin comes from, its tokens (unknown and misaligned ones marked),
    the logit difference of the expected answer, and both top-k tables."""
    if p.corrupt_source:
        st.caption(f"Corrupted twin: {literal(p.corrupt_source)}")
    if p.tokens is not None:
        st.dataframe(pd.DataFrame(token_table(p.tokens)).set_index("position").T, width="stretch")
    if p.problem:
        st.caption(f"Skipped: {literal(p.problem)}")
        return
    if p.diff is not None:
        d = st.columns(2)
        d[0].metric(f"logit diff, full model: {literal(repr(p.diff.expected))} − {literal(repr(p.diff.contrast))}",
                    f"{p.diff.full:+.2f}")
        d[1].metric("logit diff, circuit", f"{p.diff.circuit:+.2f}")
        st.caption(f"Expected answer {literal(repr(p.diff.expected))} against {literal(repr(p.diff.contrast))}, "
                   f"{literal(p.diff.why)}. Positive: the expected answer is ahead.")
    else:
        st.caption("No expected answer on this line (`prompt | corrupted | expected`), so no logit difference.")
    left, right = st.columns(2)
    left.markdown("**Full model**")
    left.dataframe(pd.DataFrame(p.full, columns=["token", "probability"]), hide_index=True)
    right.markdown("**Circuit**")
    right.dataframe(pd.DataFrame(p.circuit, columns=["token", "probability"]), hide_index=True)
