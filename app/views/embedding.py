"""Embedding: the same instances before and after unlearning; a selection feeds the other pages."""

import streamlit as st

from stakes_core.figures import embedding_figure, selected_instances
from stakes_core.figures.style import method_label

import cached
import lab
from widgets import image_strip

st.title("Embedding")
directory = lab.run_or_stop()
result = cached.run_result(str(directory))

left, middle, right = st.columns(3)
method = left.selectbox("Method", result.methods, format_func=method_label)
algorithm = middle.radio("Layout", cached.LAYOUTS, horizontal=True,
                         help="UMAP is fitted on the 'before' features and both panels use that one fit.")
per_kind = right.slider("Instances per kind (the forgotten ones are all of k at most)", 20, 300,
                         cached.EMBEDDING_PER_KIND, step=10)

view = cached.embedding(str(directory), method, per_kind, algorithm)
event = st.plotly_chart(embedding_figure(view), on_select="rerun", selection_mode=("points", "box", "lasso"),
                        key="embedding_chart")
chosen = selected_instances(event.selection.points) if event and event.selection else []
if chosen:
    st.session_state["selection"] = chosen[:40]
selection = st.session_state.get("selection", [])
st.caption(f"Layout took {view.seconds:.1f} s{' (cached)' if view.from_cache else ''}. Drag a box or lasso, or "
           "click points: the Grad-CAM, Retrieval and Structure pages use the selection.")
if selection:
    st.subheader(f"Selected ({len(selection)})")
    image_strip(cached.loaded_run(str(directory)).dataset, selection)
    cols = st.columns(3)
    cols[0].page_link("views/gradcam.py", label="Grad-CAM of these", icon=":material/visibility:")
    cols[1].page_link("views/retrieval.py", label="Retrieve with the first", icon=":material/image_search:")
    if cols[2].button("Clear the selection", icon=":material/clear:"):
        st.session_state.pop("selection", None)
        st.rerun()
