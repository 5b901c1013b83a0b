"""Lesson: the six guided steps of :mod:`stakes_core.lab.lesson`, one at a time: the explanation, the
prepared setting, a button that runs it (skipped once it is stored), the figure, what the run says
and the question for the class."""

import streamlit as st

from stakes_core.lab.lesson import INTRODUCTION, LESSON, is_stored, run_step, step_introduction

STEP_KEY = "lesson_step"


def move(by: int) -> None:
    """Previous / Next: change the chosen step before the selector is drawn."""
    st.session_state[STEP_KEY] = min(max(st.session_state.get(STEP_KEY, 0) + by, 0), len(LESSON) - 1)


st.title("Lesson")
st.markdown(INTRODUCTION)
fast = st.toggle("Quick version", key="lesson_fast",
                 help="A smoke run of every step in seconds: fewer images, a few epochs, two seeds in step 6. "
                      "The numbers then mean little.")
index = st.radio("Step", range(len(LESSON)), key=STEP_KEY, horizontal=True,
                 format_func=lambda i: f"{i + 1}. {LESSON[i].title}")
step = LESSON[index]

st.markdown(step_introduction(index + 1, step, fast))
stored = is_stored(step, fast)
if stored or st.button("Run this step", type="primary", icon=":material/play_arrow:", key="lesson_run",
                       help="Runs the prepared setting once and stores it; afterwards the step shows at once."):
    try:
        with st.spinner("Running the prepared setting once (up to a minute on a CPU)…"):
            view = run_step(step, fast)
    except Exception as error:  # shown in the page; the store keeps nothing of a failed run
        st.error(f"The step could not run: {error}", icon=":material/error:")
    else:
        st.plotly_chart(view.figure)
        for sentence in view.sentences:
            st.markdown(sentence)
        made = f"ran {view.ran} new run(s) and stored them" if view.ran else "loaded from the store"
        st.caption(f"{len(view.runs)} run(s), {made}, in {view.seconds:.1f} s.")
else:
    st.caption("This step's runs are not stored yet: press Run this step.")
st.info(f"**Question for the class.** {step.question}", icon=":material/forum:")

back, _, forward = st.columns([1, 4, 1])
back.button("Previous", on_click=move, args=(-1,), disabled=index == 0, key="lesson_previous",
            icon=":material/arrow_back:")
forward.button("Next", on_click=move, args=(1,), disabled=index == len(LESSON) - 1, key="lesson_next",
               icon=":material/arrow_forward:")
