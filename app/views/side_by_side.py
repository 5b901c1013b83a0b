"""Side by side: any two stored runs of one dataset (text vs permuted anchors, k = 4 vs k = 16),
what differs in their settings, then each run's result table, collapse curves and, on request,
its embedding."""

import streamlit as st

from stakes_core.analysis import AnalysisError, collapse_curves
from stakes_core.figures import collapse_curves_figure, embedding_figure
from stakes_core.figures.curves import share_axes
from stakes_core.figures.style import method_label
from stakes_core.infra.errors import StakesError
from stakes_core.lab.side_by_side import default_pair, pair_differences

import cached
from widgets import run_table, skipped_runs_notice

st.title("Side by side")
found = cached.stored_runs()
skipped_runs_notice(found.skipped)
if found.damaged:
    st.caption(f"{len(found.damaged)} damaged stored run(s) left out, e.g. {found.damaged[0]}.")
if len(found.runs) < 2:
    st.info(f"Side by side needs two stored runs and the store holds {len(found.runs)}: change one setting on the "
            "Setup page (k, the seed, the anchor source, a hyperparameter) and run it on the Run page.",
            icon=":material/info:")
    st.page_link("views/setup.py", label="Change the settings", icon=":material/tune:")
    st.stop()

runs = {str(run.directory): run for run in found.runs}
first, second = default_pair(found.runs)
pick_left, pick_right = st.columns(2)
left = pick_left.selectbox("Left run", list(runs), index=first, format_func=lambda d: runs[d].label, key="side_left")
right = pick_right.selectbox("Right run", list(runs), index=second, format_func=lambda d: runs[d].label,
                             key="side_right")
try:
    differences = pair_differences(runs[left], runs[right])
except AnalysisError as error:  # two datasets
    cached.stop_with(error)
if left == right:
    st.info("The same run on both sides: pick another one on the right.", icon=":material/info:")
elif differences:
    st.markdown("**What differs** (left → right): " + "; ".join(differences))
else:
    st.markdown("**What differs**: nothing in the settings (the runs differ in code versions or in the content of "
                "their descriptions).")

show_embeddings = st.checkbox("Show the embeddings", key="side_embeddings",
                              help="Lays out each run's features before and after unlearning: seconds per run, "
                                   "and the first UMAP of the server also compiles it.")
if show_embeddings:
    choose_method, choose_layout = st.columns(2)
    methods = list(dict.fromkeys([*runs[left].methods, *runs[right].methods]))
    method = choose_method.selectbox("Method", methods, format_func=method_label, key="side_method")
    algorithm = choose_layout.radio("Layout", cached.LAYOUTS, horizontal=True, key="side_layout")

results = {directory: cached.run_result(directory) for directory in (left, right)}
curves = {directory: collapse_curves_figure(collapse_curves([result])) for directory, result in results.items()}
share_axes(list(curves.values()))  # one scale on both sides
for side, column, directory in zip(("left", "right"), st.columns(2), (left, right)):
    with column:
        result = results[directory]
        st.subheader(f"{side.capitalize()}: k = {result.k}, seed {result.seed}")
        st.caption(runs[directory].label)
        run_table(result)
        st.plotly_chart(curves[directory], key=f"side_curves_{side}")
        if not show_embeddings:
            continue
        if method not in result.methods:
            st.info(f"This run has no {method_label(method)}.", icon=":material/info:")
            continue
        try:
            view = cached.embedding(directory, method, cached.EMBEDDING_PER_KIND, algorithm)
        except StakesError as error:
            st.error(str(error), icon=":material/error:")
        else:
            st.plotly_chart(embedding_figure(view), key=f"side_embedding_{side}")
