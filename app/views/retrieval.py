"""Retrieval: a query's top-5 neighbours among the retained images, before and after."""

import streamlit as st

from stakes_core.analysis.retrieval import retrieval_images
from stakes_core.figures import retrieval_grid_figure, retrieval_metrics_figure
from stakes_core.figures.style import KIND_LABELS
from stakes_core.figures.tables import glossary

import cached
import lab
from widgets import show_table

st.title("Retrieval")
directory = lab.run_or_stop()
run = cached.loaded_run(str(directory))
feature = st.radio("Features", cached.RETRIEVAL_FEATURES, horizontal=True,
                   format_func={"backbone": "backbone g(x)", "deployed": "deployed (StructGuard: p(g(x)))"}.get)
view = cached.retrieval(str(directory), feature)

positions = {(kind, index): q for q, (kind, index) in enumerate(zip(view.query_kinds, view.query_indices))}
selected = [pair for pair in st.session_state.get("selection", []) if pair in positions]
left, right = st.columns([1, 2])
kinds = [kind for kind in KIND_LABELS if kind in view.query_kinds]
kind = left.radio("Query", kinds, format_func=KIND_LABELS.get, horizontal=True,
                  index=kinds.index(selected[0][0]) if selected else 0)
choices = [index for (k, index) in positions if k == kind]
default = selected[0][1] if selected and selected[0][0] == kind else choices[0]
index = right.selectbox(f"{KIND_LABELS[kind]} instance", choices, index=choices.index(default))
query = positions[(kind, index)]
st.plotly_chart(retrieval_grid_figure(view, retrieval_images(run, view, [query]), [query], run.dataset.classes))
st.plotly_chart(retrieval_metrics_figure(view))
show_table(view.table())
st.caption("Gallery: the retained training images; queries: the forgotten images, the run's retained probe "
           "(never retrieving itself) and 300 seeded test images; relevant = an image of the query's class.")
st.markdown(glossary(["R@1", "mAP"]))
st.caption("R@5 and R@10 read like R@1 with the top 5 or 10. Low R@k on forgotten queries after unlearning is "
           "the aim (their class is no longer found next to them; the original model's row is the reference); on "
           "retained and test queries it is damage.")
