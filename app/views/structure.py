"""Structure: collapse curves, collapse against trade-off, and affinity heatmaps, each downloadable
as PNG/SVG; and every figure of the run (what ``stakes figures`` writes) as one zip."""

import streamlit as st

from stakes_core.analysis import collapse_curves, tradeoff_points
from stakes_core.figures import affinity_heatmaps_figure, collapse_curves_figure, collapse_tradeoff_figure
from stakes_core.figures.style import method_label
from stakes_core.figures.tables import glossary

import cached
import lab
from widgets import figure, figures_zip_button, skipped_runs_notice

st.title("Structure")
config = lab.config_or_stop()
directory = lab.run_or_stop()
result = cached.run_result(str(directory))

view_labels = {"backbone": "backbone g(x), every method", "projector": "StructGuard's projector p(g(x))"}
view = st.radio("Embedding", ["backbone", "projector"], horizontal=True, format_func=view_labels.get)
if view == "projector" and "structguard" not in result.methods:
    st.info("The projector view exists only for StructGuard, which this run does not include.")
else:
    figure(collapse_curves_figure(collapse_curves([result], view=view), view=view),
           f"{directory.name}-collapse_curves" + ("_projector" if view == "projector" else ""))
    st.caption("Structural collapse after each step: how far the retained probe images' affinities to the anchors "
               "moved since the original model (0 = not at all). " + glossary(["mean_collapse", "final_collapse"]))

found = cached.siblings(config)
figure(collapse_tradeoff_figure(tradeoff_points(found.runs)), f"{directory.name}-collapse_vs_tradeoff")
runs = len(found.runs)
st.caption(f"{runs} stored run{'' if runs == 1 else 's'} of this setting (every seed and k). More seeds make the "
           "trend readable.")
skipped_runs_notice(found.skipped)

st.subheader("Affinities to the anchors, before and after")
run = cached.loaded_run(str(directory))
picked = [i for kind, i in st.session_state.get("selection", []) if kind == "retained"]
left, right = st.columns([1, 2])
method = left.selectbox("Method", result.methods, format_func=method_label)
affinity_view = left.radio("Embedding for S", ["backbone", "projector"], horizontal=True, key="affinity_view",
                           disabled=method != "structguard", help="projector: StructGuard's own p(g(x)) only")
retained = right.multiselect(
    "Retained instances (pick more on the Embedding page)", run.retained_indices,
    default=picked or run.retained_indices[:cached.RETAINED_SHOWN], max_selections=40,
)
if retained:
    chosen_view = affinity_view if method == "structguard" else "backbone"
    figure(affinity_heatmaps_figure(cached.affinities(str(directory), method, tuple(retained), chosen_view)),
           f"{directory.name}-affinity_{method}")
else:
    st.info("Choose at least one retained instance.")

st.subheader("Every figure of this run")
st.caption("The figures of every page and the analyses' numbers, as `stakes figures` writes them, in one zip.")
figures_zip_button(directory)
