"""Setup: what to unlearn, with which methods and hyperparameters, on which data and anchors."""

import streamlit as st

from stakes_core.anchors import shipped_descriptions
from stakes_core.anchors.variants import ANCHOR_SOURCES
from stakes_core.data import choose_forget_indices
from stakes_core.figures.style import method_label
from stakes_core.run.config import STOP_TARGETS
from stakes_core.run.context import load_dataset, pretrained_model

import lab
from widgets import forget_strip, hyperparameter_input

st.title("Setup")
st.caption("The preset fills in the paper's settings (or, for digits, values tuned on held-out seeds). The page's "
           "address keeps these choices: copy it to share this run.")

left, right = st.columns([1, 1])
with left:
    labels = {"digits": "digits · narrow ResNet-18 (offline default)", "cifar10": "CIFAR-10 · ResNet-18",
              "cifar100": "CIFAR-100 · ResNet-50", "shapes": "shapes · synthetic, narrow ResNet-18"}
    st.selectbox(
        "Dataset and model", lab.preset_choices(), key="cfg_preset", on_change=lab.reset_settings,
        format_func=lambda preset: labels.get(preset, preset),
        help="CIFAR needs the dataset on disk (or internet) and, in practice, a GPU.",
    )
    st.number_input(f"k: training images to forget (1–{lab.MAX_K} here)", 1, key="cfg_k", step=1,
                    help=f"How many training images the model must forget; at most {lab.MAX_K} on this dashboard "
                         "(the proxy set and the steps grow with k). More is harder to forget without damage.")
    st.number_input("Seed (which images are forgotten)", 0, lab.MAX_SEED, key="cfg_seed", step=1)
    st.toggle("Retrain the model here instead of the shipped checkpoint", key="cfg_from_scratch",
              help="The shipped checkpoint gives every machine the same model, and so the README's numbers. "
                   "Retrained here, the model (and every result) depends on this machine's PyTorch and threads. "
                   "Digits and shapes ship a checkpoint; the CIFAR presets are always trained here.")
with right:
    descriptions = list(dict.fromkeys([*shipped_descriptions(), st.session_state["cfg_descriptions"]]))
    st.selectbox("Attribute descriptions", descriptions, key="cfg_descriptions",
                 help="Edit them on the Stakes page.")
    st.selectbox("Text encoder for the anchors",
                 list(dict.fromkeys([*lab.encoder_choices(), st.session_state["cfg_encoder"]])),
                 key="cfg_encoder", help="CLIP weights download from the internet; MiniLM ships with the package.")
    st.radio("Anchors", list(ANCHOR_SOURCES), key="cfg_anchor_source", horizontal=True,
             format_func=ANCHOR_SOURCES.get)

st.subheader("Methods")
for title, methods in lab.method_groups().items():
    st.markdown(f"**{title}**")
    for start in range(0, len(methods), 6):
        for column, method in zip(st.columns(6), methods[start : start + 6]):
            column.checkbox(method_label(method), key=f"cfg_method.{method}")
left, right = st.columns([1, 1])
left.radio("Stop when forget accuracy reaches", list(STOP_TARGETS), key="cfg_stop_at", horizontal=True,
           format_func={"zero": "0 (the paper)", "retrain": "the retrained model's"}.get,
           help=" ".join(f"{target}: {what}." for target, what in STOP_TARGETS.items()))
right.toggle("Retain-free only", key="cfg_retain_free",
             help="Refuse methods that read the retained images D_r or retrain on them: the paper's protocol.")
st.caption(lab.LIMITS_TEXT)

with st.expander("Hyperparameters", expanded=False):
    st.caption("Hover over the ⓘ of a hyperparameter for its meaning, its direction and its unit.")
    st.button("Reset to the preset's values", on_click=lab.reset_hyperparameters, icon=":material/restart_alt:")
    for method in lab.chosen_methods():
        st.markdown(f"**{method_label(method)}**")
        fields = st.columns(4)
        for i, hp in enumerate(lab.key_hyperparameters(method)):
            hyperparameter_input(fields[i % 4], hp, lab.hp_key(method, hp.name))

try:
    config = lab.current_config()
except lab.SettingsError as error:
    st.error(str(error), icon=":material/error:")
    st.stop()

dataset = load_dataset(config)
st.subheader(f"The {config.k} images to forget")
forget_strip(dataset, choose_forget_indices(dataset.num_train, config.k, config.seed))

if st.button("Pretrain or load the model", icon=":material/model_training:"):
    bar = st.progress(0.0, text="Loading…")
    model = pretrained_model(
        config, progress=False,
        on_epoch=lambda done, total, loss: bar.progress(done / total, text=f"epoch {done}/{total}, loss {loss:.3f}"),
    )
    bar.empty()
    st.success(f"{config.pretrain['model']}: test accuracy {model.test_acc:.2f} % ({model.origin}).")
st.page_link("views/run.py", label="Next: run the unlearning", icon=":material/play_arrow:")
