"""Streamlit blocks of the Learn page: the model choice, the schedule demo's real run, pruning step by step with
predict-then-check questions. Runs are short and cached (a class shares them), so a laptop answers in seconds."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from . import resources, state, theme
from .text import bold
from .widgets import selected_model

if TYPE_CHECKING:
    from engine import MaskedTransformer, Task


def model_choice() -> str:
    """IOI, Greater-Than or Boolean (the embedded models that are shipped); else the sidebar's model."""
    from .lessons import LESSON_MODELS  # noqa: PLC0415 - torch loads after the first render

    names = [n for n in resources.model_choices() if not resources.tracr_program(n)]
    offered = {label: m for label, part in LESSON_MODELS.items()
               if (m := next((n for n in names if part in n.lower()), None)) is not None}
    if not offered:
        return selected_model()
    label = st.radio("Teach with", list(offered), horizontal=True, key=state.kept("learn.model", next(iter(offered)),
                                                                                   list(offered)))
    state.remember("learn.model", label)
    return offered[label]


def schedule_demo(model_name: str, task: Task) -> None:
    """The target ramp for the chosen settings and, once run, a real run's expected sparsity next to it."""
    from . import charts  # noqa: PLC0415 - plotly loads after the first render

    s1, s2, s3 = st.columns(3)
    steps = s1.slider("steps", 20, 200, 60, 10, key="learn.steps")
    warm = s2.slider("warm-up share", 0.0, 1.0, 0.8, 0.05, key="learn.warm")
    target = s3.slider("final target", 0.0, 1.1, 0.95, 0.01, key="learn.target")
    setting = (model_name, task.name, steps, int(warm * steps), target)
    ran = st.session_state.setdefault("learn.schedule_runs", set())
    if st.button("Run it on the model", key="learn.run_schedule"):
        ran.add(setting)
    log = None
    if setting in ran:
        with st.spinner(f"Pruning {steps} steps…"):
            log = resources.learn_schedule(*setting)
    st.plotly_chart(charts.sparsity_schedule(steps, int(warm * steps), target, log.steps if log else ()),
                    config=charts.plotly_config())
    if log is None:
        st.caption("Dashed: the target. Run it to see the expected sparsity of a real run follow (and lag) it.")
    else:
        last = log.steps[-1]
        st.caption(f"After {len(log.steps)} steps the run's sparsity is {last.edge_sparsity:.3f} for a final target "
                   f"of {target:.2f}; the multipliers make it follow the ramp, with a lag.")


def _advance(n_stages: int) -> None:
    sess = state.session()
    sess.learn_step = min(sess.learn_step + 1, n_stages)


def _restart() -> None:
    state.session().learn_step = 0


def _open(stage_index: int, circuit: object, model_name: str) -> None:
    sess = state.session()
    name = f"learn-{model_name}-stage{stage_index + 1}"
    sess.unsaved[name] = replace(circuit, meta={**circuit.meta, "name": name, "model": model_name})
    sess.circuit_name = f"new:{name}"


def stages(model_name: str, model: MaskedTransformer, task: Task) -> None:
    """Next stage / Start over, a row per stage (target, reached sparsity, edges, KL, accuracy), the last stage's
    graph, a way into the Circuit page per stage, and the predict-then-check questions."""
    from . import lessons  # noqa: PLC0415 - torch loads after the first render

    sess, targets = state.session(), lessons.STAGE_TARGETS
    if sess.learn_model != model_name:
        sess.learn_model, sess.learn_step = model_name, 0
    st.markdown(f"Each stage continues from the previous stage's gates with a higher target "
                f"({', '.join(map(str, targets))}) and stops once it is there (at most {lessons.STAGE_STEPS} "
                "steps): watch the graph thin out and the KL grow.")
    guess_head, guess_acc = predictions(model, lessons)
    b1, b2, b3 = st.columns([1, 1, 3])
    b1.button("Next stage", disabled=sess.learn_step >= len(targets), type="primary", key="learn.next",
              on_click=_advance, args=(len(targets),))
    b2.button("Start over", key="learn.restart", on_click=_restart, disabled=sess.learn_step == 0)
    b3.caption(f"Stage {sess.learn_step} of {len(targets)}" + (" — the last one." if sess.learn_step == len(targets)
                                                                else ""))
    done = []
    for i in range(sess.learn_step):
        with st.spinner(f"Pruning stage {i + 1} (target {targets[i]})…"):
            done.append(resources.learn_stage(model_name, task.name, i, lessons.STAGE_STEPS))
    full = resources.full_model_result(model_name, task.name)   # stage 0 is the full model: its own accuracy
    rows = [{"stage": 0, "target": 0.0, "sparsity": 0.0, "edges": model.graph.n_edges, "steps": 0, "KL (test)": 0.0,
             "accuracy (test)": round(full.accuracy, 3), "at target (±10%)": ""}]
    rows += [{"stage": i + 1, "target": s.target, "sparsity": round(s.circuit.sparsity, 3), "edges": s.circuit.n_edges,
              "steps": len(s.log.steps), "KL (test)": round(s.result.kl, 4), "accuracy (test)": round(s.result.accuracy, 3),
              "at target (±10%)": "yes" if s.reached else "no"} for i, s in enumerate(done)]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    if not done:
        st.caption("Stage 0 is the full model. Press **Next stage**.")
        return
    last = done[-1]
    title = f"stage {len(done)}: target {last.target}, {last.circuit.n_edges} edges"
    st.iframe(resources.static_graph_html(last.circuit.circuit_id, title, last.circuit),
              height=theme.GRAPH_HEIGHT_PX + theme.IFRAME_EXTRA_PX, alt="learn graph")
    cols = st.columns(len(done))
    for i, (col, s) in enumerate(zip(cols, done)):
        if col.button(f"Open stage {i + 1} in Circuit", key=f"learn.open.{i}", on_click=_open,
                      args=(i, s.circuit, model_name)):
            st.switch_page("app_pages/circuit.py")
    if len(done) == len(targets):
        st.subheader("Check your predictions")
        st.markdown(lessons.head_check(guess_head, last).replace(guess_head, bold(guess_head), 1))
        st.markdown(lessons.accuracy_check(guess_acc, last))


def predictions(model: MaskedTransformer, lessons: object) -> tuple[str, str]:
    """Asked before the run; answered from it after the last stage."""
    with st.container(border=True):
        st.markdown("**Predict first.** Answered from the run after the last stage.")
        p1, p2 = st.columns(2)
        head = p1.selectbox("Which head will survive to the last stage?", lessons.heads(model.graph),
                            key="learn.guess_head")
        acc = p2.radio("How much of the full model's accuracy will the last stage keep?", lessons.ACCURACY_GUESSES,
                       key="learn.guess_acc")
    return head, acc
