"""The dashboard's state: the visitor's settings, the run they point at, and the guard rails.

Settings live in ``st.session_state`` under ``cfg_*`` keys (widgets bind to them directly and
``keep_settings`` carries them across pages). Everything computed comes from ``stakes_core``;
this module only turns settings into an :class:`ExperimentConfig` and checks them first. The
choices (presets, methods, encoders, each method's key hyperparameters) come from the
registries and the methods' configs, so a plugin's method or encoder appears with no edit here.
The settings that define a run also live in the page's address (:func:`sync_url`), so a copied
link opens the same run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import streamlit as st

from stakes_core import experiment_config, load_preset
from stakes_core.anchors import shipped_descriptions
from stakes_core.anchors.encoders import list_encoder_examples
from stakes_core.anchors.variants import ANCHOR_SOURCES
from stakes_core.data import DatasetFormatError, DatasetNotFoundError
from stakes_core.figures.style import method_label
from stakes_core.lab.url_state import UrlChoices, decode, encode, key_hyperparameters, preset_hyperparameters
from stakes_core.methods import METHODS, PAPER_METHODS, list_methods
from stakes_core.methods.access import RetainAccessError
from stakes_core.run.config import STOP_TARGETS, ExperimentConfig
from stakes_core.run.context import load_dataset
from stakes_core.run.presets import list_presets
from stakes_core.run.runstore import is_complete, run_directory

import cached

# Guard rails for a public demo: the proxy set holds k · n_adv images and every epoch is a
# step per batch of the forget set, so these two bound memory and time.
MAX_K = 128
MAX_SEED = 10_000
MAX_EPOCHS = 101
MAX_N_ADV = 50
LIMITS = {"max_epochs": MAX_EPOCHS, "n_adv": MAX_N_ADV}
"""The hyperparameters with a demo limit, and the limit (stated in their labels on the Setup page)."""
LIMITS_TEXT = (f"Limits of this dashboard: k ≤ {MAX_K}, max_epochs ≤ {MAX_EPOCHS}, n_adv ≤ {MAX_N_ADV}; "
               "a value past one is refused with a message, never ignored.")

KEPT_PREFIXES = ("cfg_", "req_")
"""Session keys whose widget values outlive a visit to another page."""


class SettingsError(ValueError):
    """The settings cannot make a run; the message says what to change."""


def preset_choices() -> list[str]:
    """The shipped presets."""
    return list_presets()


def method_choices() -> list[str]:
    """Every registered method: the paper's four in their order, then the others by name."""
    return [*PAPER_METHODS, *(name for name in list_methods() if name not in PAPER_METHODS)]


def encoder_choices() -> list[str]:
    """An example spec of every registered encoder family."""
    return list_encoder_examples()


def hp_key(method: str, name: str) -> str:
    return f"cfg_hp.{method}.{name}"


def reset_hyperparameters(only_missing: bool = False) -> None:
    """Put every exposed hyperparameter back to the current preset's value (with
    ``only_missing``, only those not set yet, such as a newly registered method's)."""
    state = st.session_state
    preset = state.get("cfg_preset", "digits")
    for method in method_choices():
        if only_missing and all(hp_key(method, hp.name) in state for hp in key_hyperparameters(method)):
            continue
        for name, value in preset_hyperparameters(preset, method).items():
            if not only_missing or hp_key(method, name) not in state:
                state[hp_key(method, name)] = value


def reset_settings() -> None:
    """The preset's defaults for everything (called when the preset changes)."""
    spec = load_preset(st.session_state.get("cfg_preset", "digits"))
    st.session_state["cfg_k"] = min(int(spec["k"][-1]), MAX_K)
    st.session_state["cfg_encoder"] = spec["anchors"]["encoder"]
    st.session_state["cfg_descriptions"] = spec["anchors"]["descriptions"]
    reset_hyperparameters()


def init_settings() -> None:
    """On a visitor's first page run, the settings the page's address holds and defaults for the
    rest; afterwards, keep every ``cfg_*`` (Setup) and ``req_*`` (Requests) value alive when
    the page that owns its widget is not shown (Streamlit drops unrendered widgets' state)."""
    state = st.session_state
    if "cfg_preset" not in state:
        linked = decode(st.query_params.to_dict(), url_choices())
        state["cfg_preset"] = linked.settings.get("preset", "digits")
        state["cfg_seed"] = 0
        state["cfg_anchor_source"] = "text"
        state["cfg_from_scratch"] = False
        state["cfg_stop_at"] = "zero"
        state["cfg_retain_free"] = False
        reset_settings()
        apply_url_settings(linked.settings)
        state["url_notice"] = linked.notice()
    for method in method_choices():  # the paper's four are chosen at first; later-registered ones start unchosen
        state.setdefault(f"cfg_method.{method}", method in PAPER_METHODS)
    reset_hyperparameters(only_missing=True)
    for key in [key for key in state if isinstance(key, str) and key.startswith(KEPT_PREFIXES)]:
        state[key] = state[key]


URL_KEYS = {"preset": "cfg_preset", "k": "cfg_k", "seed": "cfg_seed", "anchors": "cfg_anchor_source",
            "encoder": "cfg_encoder", "descriptions": "cfg_descriptions", "stop_at": "cfg_stop_at",
            "scratch": "cfg_from_scratch"}
"""The session key of each setting a link carries (besides the methods and hyperparameters)."""


def url_choices() -> UrlChoices:
    """What a link may choose: what the Setup page offers, within this dashboard's limits."""
    return UrlChoices(
        presets=preset_choices(), methods=method_choices(), encoders=encoder_choices(),
        descriptions=shipped_descriptions(), anchor_sources=list(ANCHOR_SOURCES), stop_targets=list(STOP_TARGETS),
        max_k=MAX_K, max_seed=MAX_SEED, limits=LIMITS,
    )


def apply_url_settings(settings: Mapping[str, Any]) -> None:
    """Put the settings decoded from a link into the session (what they leave out keeps its value)."""
    state = st.session_state
    for name, key in URL_KEYS.items():
        if name in settings:
            state[key] = settings[name]
    if "methods" in settings:
        for method in method_choices():
            state[f"cfg_method.{method}"] = method in settings["methods"]
    for name, value in settings.get("hyperparameters", {}).items():
        method, _, hp = name.partition(".")
        state[hp_key(method, hp)] = value


def sync_url() -> None:
    """Say once what a link set that could not be used, and write the current settings into the
    page's address whenever they differ from it, so a copied link opens the same run."""
    notice = st.session_state.pop("url_notice", None)
    if notice:
        st.warning(notice, icon=":material/link_off:")
    state = st.session_state
    methods = chosen_methods()
    settings = {name: state[key] for name, key in URL_KEYS.items()}
    settings["methods"] = methods
    settings["hyperparameters"] = {f"{method}.{hp.name}": state[hp_key(method, hp.name)]
                                   for method in methods for hp in key_hyperparameters(method)}
    wanted = encode(settings)
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def method_groups() -> dict[str, list[str]]:
    """The methods to choose from, grouped by the data they read (the paper's protocol first)."""
    titles = {"forget": "Retain-free (the paper's protocol: D_f only)", "retain": "References that read D_r",
              "retrain": "The gold reference"}
    groups: dict[str, list[str]] = {title: [] for title in titles.values()}
    for method in method_choices():
        groups[titles[METHODS.get(method).data_access]].append(method)
    return {title: methods for title, methods in groups.items() if methods}


def chosen_methods() -> list[str]:
    return [m for m in method_choices() if st.session_state.get(f"cfg_method.{m}")]


def overrides(methods: list[str]) -> list[str]:
    """``method.key=value`` for every exposed hyperparameter of ``methods`` (values as JSON,
    strings as they are: what ``experiment_config`` parses)."""
    state = st.session_state
    return [
        f"{method}.{hp.name}={value if isinstance(value, str) else json.dumps(value)}"
        for method in methods
        for hp in key_hyperparameters(method)
        if (value := state.get(hp_key(method, hp.name))) is not None
    ]


def current_config(methods: list[str] | None = None, descriptions: str | None = None) -> ExperimentConfig:
    """The run the settings describe (``methods``/``descriptions`` replace the chosen ones);
    raises :class:`SettingsError` with a message for the page when they cannot make one."""
    state = st.session_state
    methods = methods if methods is not None else chosen_methods()
    if not methods:
        raise SettingsError("Choose at least one method on the Setup page.")
    k = int(state["cfg_k"])
    if not 1 <= k <= MAX_K:
        raise SettingsError(f"k must be between 1 and {MAX_K} on this dashboard (it is {k}).")
    for method in methods:
        if int(state.get(hp_key(method, "max_epochs"), 1)) > MAX_EPOCHS:
            raise SettingsError(f"{method_label(method)}: at most {MAX_EPOCHS} epochs on this dashboard "
                                f"(max_epochs is {int(state[hp_key(method, 'max_epochs')])}).")
        if int(state.get(hp_key(method, "n_adv"), 0)) > MAX_N_ADV:
            raise SettingsError(f"{method_label(method)}: at most {MAX_N_ADV} adversarial examples per instance on "
                                f"this dashboard (n_adv is {int(state[hp_key(method, 'n_adv')])}).")
    if state.get("cfg_anchor_source", "text") not in ANCHOR_SOURCES:
        raise SettingsError(f"Unknown anchor source; choose one of {', '.join(ANCHOR_SOURCES)}.")
    try:
        config = experiment_config(
            state["cfg_preset"], k=k, seed=int(state["cfg_seed"]), methods=methods,
            overrides=overrides(methods),
            encoder=state["cfg_encoder"], descriptions=descriptions or state["cfg_descriptions"],
            anchor_source=state.get("cfg_anchor_source", "text"),
            from_scratch=bool(state.get("cfg_from_scratch", False)),
            stop_at=state.get("cfg_stop_at", "zero"), retain_free_only=bool(state.get("cfg_retain_free", False)),
        )
        num_train = load_dataset(config).num_train
    except (DatasetNotFoundError, DatasetFormatError, RetainAccessError) as error:
        raise SettingsError(str(error)) from None
    except (TypeError, ValueError) as error:
        raise SettingsError(f"These settings are not valid: {error}") from None
    if k >= num_train:
        raise SettingsError(f"k must be smaller than the {num_train} training images.")
    return config


def stored_run(config: ExperimentConfig) -> Path | None:
    """The stored run of ``config``, or ``None`` when it has not been run."""
    directory = run_directory(config)
    return directory if is_complete(directory, config.methods) else None


def config_or_stop() -> ExperimentConfig:
    """The current config, or an error box and the end of this page run."""
    try:
        return current_config()
    except SettingsError as error:
        st.error(str(error), icon=":material/error:")
        st.page_link("views/setup.py", label="Change the settings", icon=":material/tune:")
        st.stop()


def run_or_stop() -> Path:
    """The stored run of the current settings, or a pointer to the Run page and the end of this
    page run (the analysis pages need a finished run)."""
    config = config_or_stop()
    directory = stored_run(config)
    if directory is None:
        st.info("These settings have not been run yet.", icon=":material/info:")
        st.page_link("views/run.py", label="Run them", icon=":material/play_arrow:")
        st.stop()
    cached.warm_views(str(directory))  # the other analysis pages' default views, in the background
    return directory
