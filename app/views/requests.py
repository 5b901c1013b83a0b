"""Requests: deletion requests served one after another from the Setup page's settings; per
method test accuracy, collapse and relapse across rounds, and the retained instances' UMAP after
round 1 and after round T."""

import json

import streamlit as st

from stakes_core.figures.continual import arm_label, round_curves_figure, round_embedding_figure
from stakes_core.figures.tables import glossary
from stakes_core.infra.errors import StakesError
from stakes_core.report.continual import continual_answers, cost_markdown, round_summary, summary_markdown
from stakes_core.run.continual import parse_arms
from stakes_core.run.continual_store import run_continual, settings_from_config, stored_continual

import cached
import lab

MAX_ROUNDS = 10

st.title("Requests")
st.caption("Deletion requests arrive one after another: round t forgets its own k images from the model round t−1 "
           "left, with a proxy set recomputed on that model. Relapse is forget accuracy on the images of earlier "
           "rounds; collapse is measured on the backbone g(x). The methods and hyperparameters are the Setup page's.")
config = lab.config_or_stop()
state = st.session_state
defaults = {"req_rounds": 3, "req_k": min(config.k, 4), "req_seeds": [config.seed], "req_previous": False,
            "req_layout": "umap"}
for key, default in defaults.items():  # lab.init_settings keeps req_* values alive on the other pages
    if key not in state:
        state[key] = default
left, middle, right = st.columns(3)
rounds = int(left.number_input("Rounds T", 1, MAX_ROUNDS, key="req_rounds",
                               help=f"How many requests arrive, one after another (at most {MAX_ROUNDS} here)."))
k = int(middle.number_input("Images per request k", 1, lab.MAX_K, key="req_k",
                            help=f"Each request forgets k images (at most {lab.MAX_K} here)."))
seeds = right.multiselect("Seeds", list(range(10)), key="req_seeds",
                          help="Each seed draws its own sequence of disjoint forget sets.")
previous = "structguard" in config.methods and st.checkbox(
    "Also StructGuard with reference = previous", key="req_previous",
    help="S_ori and the regulariser's anchor weights from the previous round's model instead of the original's.")
names = [m for m in config.methods if m != "oracle"] + (["structguard@previous"] if previous else [])
if "oracle" in config.methods:
    st.info("The oracle is left out: it retrains on the retain set, which a request does not give.",
            icon=":material/info:")
if not names or not seeds:
    st.error("Choose at least one method (Setup page) and one seed.", icon=":material/error:")
    st.stop()
try:
    settings = settings_from_config(config, rounds, k)
    arms = parse_arms(names)
    for seed in seeds:
        settings.sequence(seed)
except StakesError as error:
    st.error(str(error), icon=":material/error:")
    st.stop()

run = stored_continual(settings, arms, seeds)
if run is None:
    st.info("These requests have not been served yet; every finished round is stored, so an interrupted run "
            "resumes.", icon=":material/info:")
    if st.button("Serve the requests", icon=":material/play_arrow:", type="primary"):
        bar = st.progress(0.0, text="starting")
        total = rounds * len(arms) * len(seeds)
        started: list[str] = []

        def on_step(method: str, record) -> None:  # type: ignore[no-untyped-def]
            if record.step == 1:
                started.append(method)
            bar.progress(min(len(started), total) / total,
                         text=f"round {len(started)} of at most {total}: {method} step {record.step}, "
                              f"forget accuracy {record.forget_acc:.0f} %")

        try:
            run = run_continual(settings, arms, seeds, progress=False, on_step=on_step)
        except StakesError as error:
            st.error(str(error), icon=":material/error:")
            st.stop()
        bar.empty()
if run is None:
    st.stop()


st.success(f"{len(run.records)} rounds ({run.computed} computed now, the others from the store).",
           icon=":material/check_circle:")
st.plotly_chart(round_curves_figure(run.records), key="req_curves")
metrics = ("test_acc", "retain_acc", "forget_acc", "relapse", "relapse_max", "collapse_original", "collapse_previous")
with st.expander("Per round: mean [95 % interval] over seeds", expanded=False):
    st.markdown(summary_markdown(round_summary(run.records), metrics,
                                 {"collapse_original": 3, "collapse_previous": 3}))
    st.caption(glossary(metrics, ids=True))
if rounds > 1:
    st.subheader("What the numbers say")
    st.markdown(continual_answers(run.records))

st.subheader(f"Retained instances after round 1 and after round {rounds}")
left, middle, right = st.columns(3)
arm = left.selectbox("Method", run.arms, format_func=arm_label, key="requests_arm")
seed = middle.selectbox("Seed", seeds, key="requests_seed")
algorithm = right.radio("Layout", ["umap", "pca"], horizontal=True, key="req_layout",
                        help="Fitted on round 1's features; both panels use that one fit.")
try:
    view = cached.round_embedding(json.dumps(run.entries), json.dumps(run.settings), arm, int(seed), algorithm)
except StakesError as error:
    st.error(str(error), icon=":material/error:")
    st.stop()
st.plotly_chart(round_embedding_figure(view), key="req_embedding")
st.subheader("Cost")
st.markdown(cost_markdown(run.records))
