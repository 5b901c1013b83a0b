"""Stakes: the anchors. Edit the descriptions, re-encode, see the anchor similarities change,
check whether they agree with what the pretrained model sees, and run StructGuard with the
edited anchors."""

import json

import pandas as pd
import streamlit as st
import torch

from stakes_core.analysis.anchor_agreement import MODEL_VIEWS, anchor_agreement, model_similarities
from stakes_core.anchors import DescriptionsError, class_prompt, load_descriptions, match_classes, parse_attributes
from stakes_core.anchors.build import anchor_similarity, mean_off_diagonal
from stakes_core.figures import anchor_similarity_figure
from stakes_core.figures.anchor_agreement import MODEL_TITLES, agreement_words, anchor_agreement_figure
from stakes_core.figures.tables import column
from stakes_core.infra.cache import TensorCache, config_key
from stakes_core.methods import hyperparameters
from stakes_core.methods.structure_space import STRUCTURE_SPACES
from stakes_core.models.pretrain import PretrainConfig, checkpoint_config
from stakes_core.models.shipped import find_shipped
from stakes_core.run.config import ExperimentConfig, resolve_device
from stakes_core.run.context import dataset_with_fingerprint, load_dataset, pretrained_model
from stakes_core.run.runstore import stored_descriptions

import cached
import lab
from progress import run_with_progress
from widgets import run_table


def model_ready(config: ExperimentConfig) -> bool:
    """Whether the pretrained model of ``config`` loads without training (shipped, or trained here before)."""
    checkpoint = checkpoint_config(PretrainConfig(**config.pretrain), dataset_with_fingerprint(config)[1])
    if not config.from_scratch and find_shipped(checkpoint) is not None:
        return True
    return TensorCache("checkpoints").exists(config_key(checkpoint))


SPACE_LABELS = {"paper": "the paper's (S = norm(V)·Aᵀ)", "conse": "ConSE (predicted mix of anchors)",
                "text_map": "text map (features mapped to the anchors)"}
SPACE_NOTES = {
    "paper": "The paper's space: the loss sees the anchors only through AᵀA, so which class gets which description "
             "cannot matter.",
    "conse": "Each image becomes the mix of its top classes' anchors, weighted by the model's probabilities: the "
             "similarity of the descriptions to each other (AAᵀ) enters the loss, so pairing matters.",
    "text_map": "A linear map from the features into the anchor space is fitted before unlearning, on the forget and "
                "proxy images, so that the anchors classify like the original model; the structure is measured "
                "there.",
}
TARGET_LABELS = {"uniform_other": "any other class (the paper)", "semantic": "semantically near classes",
                 "authors": "as released (clashes go to class C//2)"}


def hyperparameter_help(method: str, name: str) -> str:
    """The one-line help of a hyperparameter (what it is, its direction and unit)."""
    return next(hp.help for hp in hyperparameters(method) if hp.name == name)


@st.cache_resource(show_spinner="Measuring how alike the pretrained model finds the classes…", max_entries=4)
def model_side(model_key: str, _config: ExperimentConfig) -> dict[str, torch.Tensor]:
    """The pretrained model's class similarities, once per model (``model_key`` names it; an
    edit of the descriptions only recomputes the anchor side)."""
    device = resolve_device(_config.device)
    model = pretrained_model(_config, progress=False).model.to(device)
    return model_similarities(model, load_dataset(_config), device)


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

st.subheader("Do the stakes agree with the model?")
st.caption("For every pair of classes: how alike their anchors are (cosine), and how alike the pretrained model "
           "finds them, by its features (cosine of the class means, training images) or by its mistakes (soft "
           "confusion on the test images). Spearman ρ ranks the pairs both ways; p is the share of 10,000 "
           "shufflings of the model's classes that agree as well (one-sided). Stakes can only help where the "
           "descriptions describe what the model sees: edit one and watch ρ. The alignment loss itself cannot see "
           "this pairing (`AᵀA` is the same under any shuffling of the anchors' classes).")
if model_ready(config):
    model_key = json.dumps({"dataset": config.dataset, "pretrain": config.pretrain,
                            "from_scratch": config.from_scratch, "device": config.device}, sort_keys=True)
    similarities = model_side(model_key, config)
    agreement = {view: anchor_agreement(after, similarity) for view, similarity in similarities.items()}
    shipped_rho = {view: anchor_agreement(before, similarity).rho
                   for view, similarity in similarities.items()} if changed else {}
    for slot, (view, result) in zip(st.columns(len(agreement)), agreement.items()):
        slot.metric(f"ρ with the {MODEL_TITLES[view].removeprefix('model: ')}", f"{result.rho:+.2f}",
                    delta=f"{result.rho - shipped_rho[view]:+.2f} vs shipped" if changed else None,
                    help=f"{column('anchor_rho').help}. Model side: {MODEL_VIEWS[view]}; {agreement_words(result)}.")
        slot.caption(f"p = {result.p_value:.2g} ({result.n_pairs} class pairs)")
    view = st.radio("Model side of the figure", list(MODEL_VIEWS), horizontal=True, key="stakes_agreement_view",
                    format_func=lambda name: MODEL_TITLES[name].removeprefix("model: "))
    st.plotly_chart(anchor_agreement_figure(agreement[view], classes, view,
                                            f"{encoder}, {'edited' if changed else 'shipped'}"))
else:
    st.info("The pretrained model of these settings has not been trained on this machine yet; pretrain it on the "
            "Setup page to compare it with the anchors.", icon=":material/info:")
    st.page_link("views/setup.py", label="Pretrain or load the model", icon=":material/model_training:")

st.subheader("StructGuard with these anchors")
st.caption(f"k = {config.k}, seed {config.seed}, the Setup page's StructGuard hyperparameters and encoder "
           f"'{config.encoder}'.")
space_column, targets_column = st.columns(2)
space_column.radio(
    "Where StructGuard measures structure", STRUCTURE_SPACES, key=lab.hp_key("structguard", "structure_space"),
    format_func=SPACE_LABELS.get, help=hyperparameter_help("structguard", "structure_space"),
)
targets_column.radio(
    "Attack targets of the proxy set", list(TARGET_LABELS), key=lab.hp_key("structguard", "target_rule"),
    format_func=TARGET_LABELS.get, help=hyperparameter_help("structguard", "target_rule"),
)
st.caption(SPACE_NOTES[st.session_state[lab.hp_key("structguard", "structure_space")]])
try:
    edited_config = lab.current_config(methods=["structguard"], descriptions=stored_descriptions(descriptions))
except lab.SettingsError as error:
    st.error(str(error), icon=":material/error:")
    st.stop()
edited_config.encoder = encoder
other_encoder = encoder != config.encoder
semantic = edited_config.method_configs["structguard"].get("structure_space", "paper") != "paper" or (
    edited_config.method_configs["structguard"].get("target_rule") == "semantic")
if not changed and not other_encoder and not semantic:
    st.info("Edit a description above, choose another encoder or a space where the anchors' meaning counts to run "
            "StructGuard with other stakes; these are the shipped ones in the paper's space.", icon=":material/edit:")
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
