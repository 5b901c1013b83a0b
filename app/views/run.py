"""Run: unlearn with every chosen method, with live progress; stored runs load at once."""

import streamlit as st

from stakes_core.analysis import collapse_curves
from stakes_core.figures import collapse_curves_figure
from stakes_core.figures.style import method_label
from stakes_core.figures.tables import glossary

import lab
from cached import run_result, warm_views
from progress import run_with_progress
from widgets import figure, run_table

st.title("Run")
config = lab.config_or_stop()
st.markdown(
    f"**{config.dataset['name']}**, k = {config.k}, seed {config.seed}, anchors: {config.anchor_source} "
    f"({config.encoder}); methods: {', '.join(method_label(m) for m in config.methods)}."
)

directory = lab.stored_run(config)
if directory is None:
    if st.session_state.get("run_cancel"):
        st.warning("The run was cancelled; nothing was stored.", icon=":material/cancel:")
    if st.button("Run unlearning", type="primary", icon=":material/play_arrow:"):
        st.button("Cancel", key="run_cancel", icon=":material/stop:",
                  help="Stops at the next step; a cancelled run stores nothing.")
        try:
            run_with_progress(config)
        except Exception as error:  # any failure is shown in the page; the store keeps nothing of it
            which = " ".join(getattr(error, "__notes__", []))  # names the method that failed
            st.error(f"The run failed and nothing was stored: {error} {which}".strip(), icon=":material/error:")
            st.stop()
        st.session_state["run_finished"] = True
        st.rerun()  # show the stored result without the buttons and bars of the run
elif st.session_state.pop("run_finished", False):
    st.success("Finished: the results are stored; switching pages or rerunning these settings is instant.",
               icon=":material/check_circle:")
else:
    st.success("These settings were run before: their results load from the store.", icon=":material/inventory_2:")

if directory is not None:
    warm_views(str(directory))  # the analysis pages' default views, made while the visitor reads this one
    result = run_result(str(directory))
    run_table(result)
    st.caption(glossary(["retain_acc", "forget_acc", "test_acc", "mean_collapse", "final_collapse"]))
    # also loads the browser's chart library here, not on the first analysis page (about 1.4 s)
    figure(collapse_curves_figure(collapse_curves([result])), f"{directory.name}-collapse_curves")
    cols = st.columns(3)
    cols[0].page_link("views/structure.py", label="Structure", icon=":material/hub:")
    cols[1].page_link("views/embedding.py", label="Embedding", icon=":material/scatter_plot:")
    cols[2].page_link("views/compare.py", label="Compare and download", icon=":material/table_chart:")
