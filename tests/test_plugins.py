"""Plugins: loading them (``--plugin``, ``STAKES_PLUGINS``, entry points), what they may register
(methods, figures, pages) and where that shows up, the run store's tolerance of runs whose
method is not loaded, and the code version in the run key. The examples of
``docs/extending.md`` are extracted and run, so the guide stays true."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

from stakes_core import cli
from stakes_core.data import DATASETS
from stakes_core.figures import write_report
from stakes_core.figures.registry import register_figure
from stakes_core.infra.errors import ConfigError, StakesError
from stakes_core.infra.plugins import ENTRY_POINT_GROUP, PLUGINS_ENV, PluginNotFoundError, load_plugins
from stakes_core.lab.pages import list_pages, register_page
from stakes_core.methods import METHODS, NegGrad, hyperparameters, list_methods
from stakes_core.run import environment
from stakes_core.run.config import experiment_config
from stakes_core.run.runstore import (
    UnregisteredMethodWarning,
    find_siblings,
    load_or_run,
    run_key,
    sibling_runs,
)
from stakes_core.testing import scratch_registries, tiny_dataset, write_tiny_preset

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "extending.md"
MAIN = str(ROOT / "app" / "main.py")


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny models here run fastest on one thread, and many times slower on several when
    other jobs share the cores; the setting is put back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def guide_files() -> dict[str, str]:
    """The example files of the guide: each fenced block after a ``<!-- file: NAME -->`` line."""
    found = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)\n```", GUIDE.read_text(), re.S)
    return {name: body + "\n" for name, body in found}


@pytest.fixture
def guide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The guide's files in a fresh working directory; what they register is undone afterwards."""
    for name, body in guide_files().items():
        (tmp_path / name).write_text(body)
    monkeypatch.chdir(tmp_path)
    with scratch_registries():
        yield tmp_path


def write_plugin(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(body)
    return path


COUNTING = """
from pathlib import Path
from stakes_core.methods import NegGrad, register_method

with open(Path(__file__).with_suffix(".runs"), "a") as runs:
    runs.write("ran\\n")


@register_method
class Counted(NegGrad):
    name = "counted"
"""


BROKEN = """import stakes_core.methods


raise RuntimeError("bug in the plugin")
"""


# --- loading ----------------------------------------------------------------------------------


def test_the_guide_has_every_example_file() -> None:
    assert set(guide_files()) == {
        "relabel.py", "test_relabel.py", "lines.py", "lines.json", "lines_descriptions.json", "words.py",
        "confidence.py",
    }


def test_a_plugin_file_registers_its_method_and_runs_once(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path, "counted.py", COUNTING)
    with scratch_registries():
        first = load_plugins([str(plugin)])
        again = load_plugins([str(plugin), os.path.relpath(plugin)])  # the same file, spelt otherwise
        assert again == [first[0], first[0]]
        assert plugin.with_suffix(".runs").read_text() == "ran\n"
        assert "counted" in list_methods()
    assert "counted" not in list_methods()
    with scratch_registries():  # after a scratch, a plugin loads (and registers) afresh
        load_plugins([str(plugin)])
        assert "counted" in list_methods()
    assert plugin.with_suffix(".runs").read_text() == "ran\nran\n"


def test_a_missing_plugin_is_a_one_line_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(PluginNotFoundError, match=r"plugin file 'nowhere\.py' \(from --plugin\) does not exist"):
        load_plugins(["nowhere.py"], source="--plugin")
    with pytest.raises(PluginNotFoundError, match=r"plugin 'no_such_pkg\.relabel' \(from STAKES_PLUGINS\) is not an"):
        load_plugins(["no_such_pkg.relabel"], source=PLUGINS_ENV)
    assert issubclass(PluginNotFoundError, StakesError)
    assert cli.main(["--plugin", str(tmp_path / "nowhere.py"), "list"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("stakes: error: plugin file") and "(from --plugin)" in error


def test_an_error_in_the_plugin_keeps_its_traceback(tmp_path: Path) -> None:
    broken = write_plugin(tmp_path, "broken.py", BROKEN)
    with scratch_registries():
        with pytest.raises(RuntimeError, match="bug in the plugin") as raised:
            cli.main(["--plugin", str(broken), "list"])
        assert not isinstance(raised.value, StakesError)
        assert traceback.extract_tb(raised.tb)[-1].filename == str(broken.resolve())
        assert traceback.extract_tb(raised.tb)[-1].lineno == 4
        # a module that exists but imports something missing is the plugin's bug too, not "not found"
        write_plugin(tmp_path, "needs_missing.py", "import no_such_dependency_of_the_plugin\n")
        sys.path.insert(0, str(tmp_path))
        try:
            with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_the_plugin") as raised:
                load_plugins(["needs_missing"])
        finally:
            sys.path.remove(str(tmp_path))
        assert not isinstance(raised.value, StakesError)


@pytest.mark.slow
def test_stakes_plugins_are_there_in_a_fresh_process_without_a_call(guide: Path) -> None:
    """Plain Python: importing the package and asking a registry is enough."""
    specs = os.pathsep.join(["relabel.py", str(guide / "confidence.py")])
    env = {**os.environ, PLUGINS_ENV: specs, "OMP_NUM_THREADS": "1"}
    code = ("from stakes_core.methods import list_methods; from stakes_core.figures import list_figures; "
            "print(list_methods(), list_figures())")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=guide, capture_output=True, text=True, check=True)
    assert "'relabel'" in done.stdout and "'forget_confidence'" in done.stdout


def test_stakes_plugins_load_at_the_first_lookup(guide: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, os.pathsep.join(["relabel.py", "", "confidence.py"]))
    assert "relabel" in METHODS  # the lookup loads them
    assert [page.title for page in list_pages()] == ["Forget confidence"]


def test_a_missing_stakes_plugins_entry_names_the_variable(guide: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, "relabl.py")
    with pytest.raises(PluginNotFoundError, match=f"'relabl.py' \\(from {PLUGINS_ENV}\\)"):
        list_methods()


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    entry_point = importlib.metadata.EntryPoint(name="mylab", value=module, group=ENTRY_POINT_GROUP)

    def entry_points(**selection):
        return [entry_point] if selection.get("group") == ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_entry_point_plugins_load_at_the_first_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_plugin(tmp_path, "mylab_counted.py", COUNTING)
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points(monkeypatch, "mylab_counted")
    with scratch_registries():
        assert "counted" in list_methods()
        load_plugins(["mylab_counted"])  # named again, by module: not run again
    assert (tmp_path / "mylab_counted.runs").read_text() == "ran\n"
    assert "mylab_counted" not in sys.modules


def test_a_missing_entry_point_module_names_the_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, "mylab_gone.plugin")
    with scratch_registries():
        with pytest.raises(PluginNotFoundError, match="entry point 'mylab' .*stakes.plugins"):
            list_methods()


def test_a_plugin_may_use_the_registries_while_it_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-entrancy: a plugin loaded by a lookup imports the package and looks names up itself."""
    write_plugin(tmp_path, "curious.py", """
from stakes_core.methods import METHODS, NegGrad, list_methods, register_method

SEEN = list_methods()
BASE = METHODS.get("neggrad")


@register_method
class Curious(BASE):
    name = "curious"


assert "curious" in METHODS
""")
    monkeypatch.setenv(PLUGINS_ENV, str(tmp_path / "curious.py"))
    with scratch_registries():
        assert METHODS.get("curious").__mro__[1] is NegGrad
        module = load_plugins([str(tmp_path / "curious.py")])[0]
        assert "curious" not in module.SEEN and "neggrad" in module.SEEN


def test_stakes_list_shows_what_plugins_registered(guide: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--plugin", "relabel.py", "--plugin", "confidence.py", "--plugin", "words.py", "list"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert "relabel (D_f only)" in lines["methods"].split(", ") and "words" in lines["encoders"].split(", ")
    assert lines["figures"] == "forget_confidence" and lines["pages"] == "Forget confidence"
    assert lines["plugins"].split(", ")[-3:] == [str((guide / name).resolve()) for name in
                                                 ("relabel.py", "confidence.py", "words.py")]


def test_the_package_root_exports_load_plugins() -> None:
    import stakes_core

    assert stakes_core.load_plugins is load_plugins and "load_plugins" in stakes_core.__all__


# --- the guide's other examples ---------------------------------------------------------------


def test_the_guide_method_has_its_hyperparameters_and_help(guide: Path) -> None:
    load_plugins(["relabel.py"])
    key = {hp.name: hp for hp in hyperparameters("relabel") if hp.key}
    assert list(key) == ["lr", "max_epochs", "label_smoothing"]
    assert "label smoothing" in key["label_smoothing"].help
    assert METHODS.get("relabel").version == 1


@pytest.mark.slow
def test_the_guide_method_test_passes(guide: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_relabel.py"],
                          cwd=guide, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_the_guide_dataset_and_encoder(guide: Path) -> None:
    from stakes_core.anchors import build_anchors, create_encoder, load_descriptions
    from stakes_core.anchors.encoders import list_encoder_examples
    from stakes_core.data import create_dataset
    from stakes_core.run.presets import load_preset

    load_plugins(["lines.py", "words.py"])
    preset = load_preset("lines.json")
    dataset = create_dataset(**preset["dataset"], root="ignored")
    assert dataset.classes == ["horizontal", "vertical", "box", "cross"]
    assert dataset.image_shape == (1, 16, 16) and dataset.num_train == 1200
    assert "words:256" in list_encoder_examples()
    anchors = build_anchors(load_descriptions(preset["anchors"]["descriptions"]), "words:256")
    assert anchors.shape == (4, 256)
    assert float(anchors[0] @ anchors[1]) > float(anchors[0] @ anchors[2])  # bars share words; a box does not
    with pytest.raises(ConfigError, match="words:<dim>"):
        create_encoder("words:x")


def test_figure_names_are_checked() -> None:
    with scratch_registries():
        with pytest.raises(ConfigError, match="taken by the report"):
            register_figure("gradcam", lambda run: None)
        with pytest.raises(ConfigError, match="taken by the report"):
            register_figure("embedding_mine", lambda run: None)
        with pytest.raises(ConfigError, match="file name"):
            register_figure("my figure", lambda run: None)


def test_page_addresses_are_checked() -> None:
    with scratch_registries():
        register_page("Forget confidence", lambda: None)
        with pytest.raises(ConfigError, match="same address"):
            register_page("forget-confidence", lambda: None)
        with pytest.raises(ConfigError, match="letter or digit"):
            register_page(" - ", lambda: None)
        assert list_pages()[0].url_path == "plugin-forget-confidence"


# --- the run store: code versions and runs of methods that are not loaded --------------------


@pytest.fixture
def tiny_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A preset on the tiny dataset (registered for the test) with random anchors: runs in seconds."""
    monkeypatch.setenv("STAKES_CACHE_DIR", str(tmp_path / "cache"))
    preset = write_tiny_preset(tmp_path)
    with scratch_registries():
        DATASETS.register("tiny", lambda **_: tiny_dataset())
        yield preset


def tiny_config(preset: Path, method: str = "neggrad", seed: int = 0):
    return experiment_config(str(preset), seed=seed, methods=[method], overrides=[f"{method}.max_epochs=1"],
                             device="cpu")


@pytest.mark.slow
def test_bumping_a_method_version_changes_its_key_and_recomputes(
    tiny_preset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, store = tiny_config(tiny_preset), tmp_path / "store"
    first = load_or_run(config, root=store, progress=False)
    key = run_key(config)
    monkeypatch.setattr(NegGrad, "version", 2)
    assert run_key(config) != key
    steps = []
    second = load_or_run(config, root=store, progress=False, on_step=lambda method, record: steps.append(record))
    assert steps and second != first and first.is_dir()  # recomputed into a new entry; the old one is left alone
    assert len(list(store.iterdir())) == 2 and len(sibling_runs(config, root=store)) == 1  # the stale one is not pooled
    monkeypatch.setattr(environment, "LOOP_VERSION", environment.LOOP_VERSION + 1)
    assert run_key(config) not in {key, second.name.rsplit("-", 1)[1]}


def test_runs_of_methods_that_are_not_loaded_are_skipped_with_a_notice(tiny_preset: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    plugin = write_plugin(tmp_path, "counted.py", COUNTING)
    with scratch_registries():
        load_plugins([str(plugin)])
        counted = load_or_run(tiny_config(tiny_preset, "counted"), root=store, progress=False)
    assert "counted" not in METHODS  # as in a process that did not load the plugin
    neggrad = tiny_config(tiny_preset)
    load_or_run(neggrad, root=store, progress=False)
    with pytest.warns(UnregisteredMethodWarning, match=f"{counted.name}: its method 'counted' is not registered"):
        runs = sibling_runs(neggrad, root=store)
    assert [list(run.methods) for run in runs] == [["neggrad"]]
    found = find_siblings(neggrad, root=store)
    assert [(skipped.directory, skipped.methods) for skipped in found.skipped] == [(counted, ("counted",))]
    assert str(found.skipped[0]).count("\n") == 0


@pytest.mark.slow
def test_registered_figures_are_written_by_the_report(tiny_preset: Path, tmp_path: Path, guide: Path) -> None:
    directory = load_or_run(tiny_config(tiny_preset), root=tmp_path / "store", progress=False)
    load_plugins(["confidence.py"])
    report = write_report(directory, tmp_path / "figures", "html", embedding="pca", progress=False)
    assert tmp_path / "figures" / "forget_confidence.html" in report.files
    assert "figure forget_confidence" in report.seconds
    assert "p(true class)" in (tmp_path / "figures" / "forget_confidence.html").read_text()


# --- the dashboard ----------------------------------------------------------------------------


def messages(at: AppTest) -> dict[str, list[str]]:
    return {kind: [e.value for e in getattr(at, kind)] for kind in ("exception", "error", "warning", "info", "success")}


def open_plugin_page(at: AppTest, url_path: str) -> AppTest:
    """Switch to a page registered with a function. ``AppTest.switch_page`` takes files only, so
    the page is found by its address among the pages the last run registered."""
    pages = {info.get("url_pathname"): page_hash for page_hash, info in at._registered_pages.items()}
    assert url_path in pages, sorted(map(str, pages))
    at._page_hash = pages[url_path]
    return at.run()


def test_a_plugin_method_is_a_choice_on_setup_with_its_key_hyperparameters(guide: Path) -> None:
    load_plugins(["relabel.py"])
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    assert not at.exception, messages(at)
    assert at.checkbox(key="cfg_method.relabel").value is False  # listed, not chosen by default
    for method in ("neggrad", "adv", "l2ul", "structguard"):
        at.checkbox(key=f"cfg_method.{method}").uncheck()
    at.checkbox(key="cfg_method.relabel").check()
    at.number_input(key="cfg_k").set_value(4).run()
    assert not at.exception and not at.error, messages(at)
    smoothing = at.number_input(key="cfg_hp.relabel.label_smoothing")
    assert smoothing.value == 0.0 and "label smoothing" in smoothing.help
    assert at.number_input(key="cfg_hp.relabel.max_epochs").value == 101
    assert any("4 images to forget" in h.value for h in at.subheader)
    at.switch_page("views/run.py").run()
    assert "methods: relabel." in at.markdown[0].value and [b.label for b in at.button] == ["Run unlearning"]


def test_a_plugin_page_joins_the_navigation(guide: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAKES_CACHE_DIR", str(guide / "cache"))  # nothing stored: the page points to the Run page
    load_plugins(["confidence.py"])
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    open_plugin_page(at, "plugin-forget-confidence")
    assert not at.exception, messages(at)
    assert at.title[0].value == "Forget confidence"
    assert any("not been run yet" in text for text in messages(at)["info"])


@pytest.mark.slow
def test_the_guide_method_from_the_command_line(guide: Path, capsys: pytest.CaptureFixture) -> None:
    """``stakes --plugin relabel.py run …`` and ``figures`` on digits, as the guide shows."""
    out = guide / "runs"
    assert cli.main(["--plugin", "relabel.py", "run", "--methods", "relabel", "--k", "4", "--set",
                     "relabel.max_epochs=3", "--out", str(out), "--quiet"]) == 0
    assert "| 4 | relabel | D_f only | 1 |" in capsys.readouterr().out
    run_dir = out / "digits" / "k4" / "seed0"
    assert (run_dir / "models" / "relabel.pt").is_file()
    assert cli.main(["--plugin", "relabel.py", "--plugin", "confidence.py", "figures", str(run_dir),
                     "--format", "html", "--embedding", "pca", "--quiet"]) == 0
    written = {path.name for path in (run_dir / "figures").iterdir()}
    assert {"embedding_relabel.html", "affinity_relabel.html", "forget_confidence.html"} <= written


@pytest.mark.slow
def test_the_guide_method_in_the_dashboard_and_its_runs_once_it_is_gone(guide: Path) -> None:
    """Run the plugin's method from the Run page and see it on the plugin's page; then, with
    the plugin gone, the Compare page leaves its stored run out and says so."""
    with scratch_registries():
        load_plugins(["relabel.py", "confidence.py"])
        at = AppTest.from_file(MAIN, default_timeout=300)
        at.run()
        at.number_input(key="cfg_k").set_value(4)
        for method in ("adv", "l2ul", "structguard"):
            at.checkbox(key=f"cfg_method.{method}").uncheck()
        at.checkbox(key="cfg_method.relabel").check()
        at.run()
        at.number_input(key="cfg_hp.neggrad.max_epochs").set_value(2)
        at.number_input(key="cfg_hp.relabel.max_epochs").set_value(3)
        at.switch_page("views/run.py").run()
        at.button[0].click().run()
        assert not at.exception and not at.error, messages(at)
        assert list(at.dataframe[0].value["method"]) == ["original", "NegGrad", "relabel"]
        open_plugin_page(at, "plugin-forget-confidence")
        assert not at.exception and not at.error, messages(at)
        assert len(at.get("plotly_chart")) == 1
        at.switch_page("views/compare.py").run()
        assert not at.exception and not at.error, messages(at)
        assert not any("not registered" in text for text in messages(at)["info"])
    # the plugin is gone: relabel is no choice any more, its stored run is left out with a notice
    at.switch_page("views/setup.py").run()
    assert not at.exception, messages(at)
    at.switch_page("views/run.py").run()
    at.button[0].click().run()  # NegGrad alone, k=4, two epochs
    at.switch_page("views/compare.py").run()
    assert not at.exception and not at.error, messages(at)
    assert any("relabel is not registered" in text for text in messages(at)["info"]), messages(at)
    at.switch_page("views/structure.py").run()
    assert not at.exception and not at.error, messages(at)
    assert any("relabel is not registered" in text for text in messages(at)["info"]), messages(at)
