"""Stakes: the anchors. Edit the descriptions, re-encode, see the anchor similarities change,
and run StructGuard with the edited anchors."""

import json

import pandas as pd
import streamlit as st

from stakes_core.anchors import DescriptionsError, class_prompt, load_descriptions, match_classes, parse_attributes
from stakes_core.anchors.build import anchor_similarity, mean_off_diagonal
from stakes_core.figures import anchor_similarity_figure
from stakes_core.run.context import load_dataset
from stakes_core.run.runstore import stored_descriptions

import cached
import lab
from progress import run_with_progress
from widgets import run_table

st.title("Stakes")
st.markdown(
    "StructGuard keeps each retained image's affinities to one anchor per class, `S = normalize(V)·Aᵀ`. "
    "An anchor is the text embedding of its class's attribute descriptions. Edit them here and see what "
    "changes. The alignment loss sees the anchors only through `AᵀA`: swapping descriptions between "
    "classes changes nothing, and so far, on digits, random anchors did as well as semantic ones."
)
config = lab.config_or_stop()
classes = load_dataset(config).classes
shipped = match_classes(load_descriptions(config.descriptions), classes)
encoder = st.selectbox("Encoder", list(dict.fromkeys([config.encoder, *lab.encoder_choices()])))

table = pd.DataFrame({"class": list(shipped), "attributes": [class_prompt(a) for a in shipped.values()]})
readable = st.container()  # the descriptions as they stand, wrapped, above their editor
with st.expander("Edit the descriptions", icon=":material/edit:"):
    edited = st.data_editor(
        table, key="stakes_editor", hide_index=True, disabled=["class"], width="stretch",
        column_config={"class": st.column_config.TextColumn("class", width="small"),
                       "attributes": st.column_config.TextColumn("attributes (separate with ;)", width="large")},
    )
try:
    descriptions = load_descriptions({row["class"]: parse_attributes(str(row["attributes"] or ""))
                                      for _, row in edited.iterrows()})
except DescriptionsError as error:
    st.error(f"These descriptions cannot be encoded: {error}", icon=":material/error:")
    st.stop()
changed = [name for name in classes if descriptions[name] != shipped[name]]
readable.table(pd.DataFrame({"class": list(descriptions),
                             "attributes": [class_prompt(a) for a in descriptions.values()]}).set_index("class"))
st.caption(f"Edited classes: {', '.join(changed)}" if changed else "No class edited yet.")

try:
    before = anchor_similarity(cached.anchors(json.dumps(shipped), encoder, tuple(classes)))
    after = anchor_similarity(cached.anchors(json.dumps(descriptions), encoder, tuple(classes)))
except Exception as error:  # an encoder that cannot load (e.g. CLIP offline) says why
    st.error(f"The encoder '{encoder}' is not available: {error}", icon=":material/error:")
    st.stop()
left, right = st.columns(2)
left.plotly_chart(anchor_similarity_figure(before, classes, f"{encoder}, shipped descriptions"))
right.plotly_chart(anchor_similarity_figure(after, classes, f"{encoder}, edited descriptions"))
st.caption(f"Mean cosine between different classes' anchors went from {mean_off_diagonal(before):.2f} to "
           f"{mean_off_diagonal(after):.2f} (lower = the anchors are more spread out).")

st.subheader("StructGuard with these anchors")
st.caption(f"k = {config.k}, seed {config.seed}, the Setup page's StructGuard hyperparameters and encoder "
           f"'{config.encoder}'.")
try:
    edited_config = lab.current_config(methods=["structguard"], descriptions=stored_descriptions(descriptions))
except lab.SettingsError as error:
    st.error(str(error), icon=":material/error:")
    st.stop()
edited_config.encoder = encoder
other_encoder = encoder != config.encoder
if not changed and not other_encoder:
    st.info("Edit a description above (or choose another encoder) to run StructGuard with other anchors; "
            "these are the shipped ones.", icon=":material/edit:")
    st.stop()
directory = lab.stored_run(edited_config)
if directory is None and st.button(
    f"Run StructGuard with the {'edited anchors' if changed else 'anchors'}{f' ({encoder})' if other_encoder else ''}",
    type="primary", icon=":material/play_arrow:",
):
    try:
        directory = run_with_progress(edited_config)
    except Exception as error:  # shown in the page; the store keeps nothing of a failed run
        st.error(f"The run failed and nothing was stored: {error}", icon=":material/error:")
        st.stop()
if directory is not None:
    st.markdown(f"**{'Edited anchors' if changed else 'Shipped descriptions'}, encoder {encoder}**")
    run_table(cached.run_result(str(directory)))
    shipped_config = lab.current_config(methods=["structguard"])
    shipped_config.encoder = encoder
    reference = lab.stored_run(shipped_config)
    if reference is not None and reference != directory:
        st.markdown("**Shipped descriptions, same settings**")
        run_table(cached.run_result(str(reference)))
    elif reference is None:
        st.caption(f"Run StructGuard alone with the shipped descriptions and encoder '{encoder}' (Setup, then "
                   "Run) to compare.")
