"""Prompt lab: the full model's and the circuit's top predictions on typed prompts, side by side."""

import pandas as pd
import streamlit as st

from explorer import circuit_widgets, eval_widgets, prompt_widgets, prompts, resources, widgets
from explorer.text import bold, literal

widgets.require_frame()
st.title("Prompt lab")
circuit = circuit_widgets.circuit_picker()
if circuit is None:
    st.stop()
model_name = resources.model_key(circuit.meta.get("model", ""))
if resources.tracr_program(model_name):
    st.info("This is a circuit of a Tracr program, which outputs a label at every position rather than a next "
            "token: see its faithfulness on the **Circuit** page (on every input of the program).")
    st.stop()
try:
    model = resources.get_model(model_name)
except Exception as e:  # the circuit's model is not available here
    st.error(f"This circuit's model {bold(model_name or '?')} cannot be loaded: {literal(e)}")
    st.stop()
if not model.graph.same_as(circuit.graph):
    st.error("This circuit does not fit its model's graph.")
    st.stop()
tasks = eval_widgets.offered(model_name, [circuit.meta.get("task", "")])
default = circuit.meta.get("task") if circuit.meta.get("task") in tasks else resources.default_task(model_name)
task_name = st.selectbox("Corrupted twins from task (when you give none)", tasks, index=tasks.index(default))
try:
    task = eval_widgets.load_task(model_name, task_name)
except (KeyError, ValueError) as e:
    st.warning(f"Task {literal(task_name)} is not available for this model ({literal(e)}); give corrupted twins yourself.")
    task = None

example = ""
if task is not None:
    ex = task.split("test").examples[:3]
    example = "\n".join(f"{e.clean} | {e.corrupt} | {e.answer}" for e in ex)
text = st.text_area("Prompts — one per line: `prompt`, `prompt | corrupted`, or `prompt | corrupted | expected`",
                    example, height=140, key="prompts.text")
k = st.slider("Top-k", 1, 10, 5, key="prompts.k")
rows = prompts.parse(text)
if not rows:
    st.info("Type at least one prompt.")
    st.stop()
try:
    preds = prompts.predict_rows(model, circuit, rows, task, k)
except ValueError as e:
    st.error(literal(e))
    st.stop()

n_lines = len(preds)
c = st.columns(3)
TOP1 = ("Share of lines whose most likely next token is the expected answer. Stricter than the accuracy on the Circuit "
        "and Compare pages, which asks only that the expected answer beats the corrupted prompt's answer.")
for col, which, title in ((c[0], "full", "Full model top-1 accuracy"),
                          (c[1], "circuit", f"Circuit top-1 accuracy ({circuit.n_edges:,} edges)")):
    acc, n = prompts.accuracy(preds, which)
    col.metric(title, "n/a" if acc is None else f"{acc:.0%}", help=TOP1)
    col.caption(f"{n} of {n_lines} line(s) {'has' if n == 1 else 'have'} an expected answer and ran"
                + ("" if n else ": add `| corrupted | expected` to a line to score it"))
ok = [p for p in preds if not p.problem]
c[2].metric("Top-1 agreement", f"{sum(p.agree for p in ok) / len(ok):.0%}" if ok else "n/a")
c[2].caption(f"over the {len(ok)} of {n_lines} line(s) that ran")

table = [{"prompt": p.row.clean, "expected": p.row.answer or "",
          "full model": f"{p.full[0][0]!r} {p.full[0][1]:.2f}" if p.full else "",
          "circuit": f"{p.circuit[0][0]!r} {p.circuit[0][1]:.2f}" if p.circuit else "",
          "logit diff (full)": p.diff.full if p.diff else None, "logit diff (circuit)": p.diff.circuit if p.diff else None,
          "vs": f"{p.diff.contrast!r}" if p.diff else "", "agree": p.agree, "corrupted from": p.corrupt_source,
          "problem": p.problem} for p in preds]
st.dataframe(pd.DataFrame(table), hide_index=True)
for i, p in enumerate(preds):
    if p.problem:
        st.warning(f"Line {i + 1} skipped: {literal(p.problem)}")
    for w in p.warnings:
        st.warning(f"Line {i + 1}: {literal(w)}")

for i, p in enumerate(preds[:10]):
    with st.expander(f"{i + 1}. {literal(p.row.clean[-80:])}", expanded=i == 0):
        prompt_widgets.prompt_detail(p)
