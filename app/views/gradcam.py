"""Grad-CAM: where each model looks on forgotten, retained and test images."""

import streamlit as st

from stakes_core.figures import gradcam_grid_figure
from stakes_core.figures.style import method_label

import cached
import lab

st.title("Grad-CAM")
directory = lab.run_or_stop()
result = cached.run_result(str(directory))
run = cached.loaded_run(str(directory))

selection = st.session_state.get("selection", [])[:12]
if selection:
    st.caption("Showing the instances selected on the Embedding page.")
    chosen = tuple(selection)
else:
    default = run.default_instances(cached.GRADCAM_PER_KIND)
    chosen = tuple(zip(default.kinds, default.indices))
    st.caption("Two forgotten, two retained and two test images; select others on the Embedding page.")
left, middle, right = st.columns([2, 1, 1])
methods = left.multiselect("Methods", result.methods, default=result.methods, format_func=method_label)
target = middle.radio("Explain the class", cached.GRADCAM_TARGETS, horizontal=True,
                      format_func={"label": "true label", "predicted": "predicted"}.get)
stage = right.radio("Layer", cached.GRADCAM_STAGES, horizontal=True,
                    help="layer4 is 2×2 on 16×16 or 32×32 images; layer3 gives finer maps.")
if not methods:
    st.info("Choose at least one method.")
    st.stop()
view = cached.gradcam(str(directory), chosen, tuple(methods), target, stage)
st.plotly_chart(gradcam_grid_figure(view))
st.caption(f"Computed in {view.seconds:.1f} s with pytorch-grad-cam on the deployed model of each method.")
