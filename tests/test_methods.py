"""The unlearning loop, each method's mechanics and the method registry, on tiny models."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch

from stakes_core.infra.errors import ConfigError
from stakes_core.infra.registry import UnknownNameError, scratch_registries
from stakes_core.methods import (
    LOOP_VERSION,
    METHODS,
    Hyperparameter,
    StructGuard,
    StructGuardConfig,
    Timer,
    UnlearningMethod,
    create_method,
    forget_and_proxy_loss,
    forget_batches,
    hyperparameters,
    list_methods,
    register_method,
)
from stakes_core.methods.l2ul import mas_importance
from tests.helpers import tiny_context

FAST = {"max_epochs": 4, "n_adv": 4, "pgd_iterations": 3, "pgd_eps": 1.0, "pgd_step": 0.3}


def fast(name: str, **extra):
    keys = {f for f in METHODS.get(name).config_class.__dataclass_fields__}
    return {k: v for k, v in {**FAST, **extra}.items() if k in keys}


@pytest.mark.parametrize("name", ["neggrad", "adv", "l2ul", "structguard", "oracle"])
def test_every_method_runs_records_and_times_its_steps(name: str) -> None:
    context = tiny_context()
    seen = []
    outcome = create_method(name, **fast(name, lr=0.05)).run(context, on_step=lambda m, r: seen.append((m, r.step)))
    records = outcome.records
    assert records[0].step == 0 and records[0].collapse == pytest.approx(0.0, abs=1e-6)
    if name != "structguard":  # its deployed path starts with a random projector
        original = (context.original(context.forget_images).argmax(1) == context.forget_labels).float().mean()
        assert records[0].forget_acc == pytest.approx(100.0 * original.item())
    assert [r.step for r in records] == list(range(len(records)))
    assert seen == [(name, r.step) for r in records[1:]]
    assert not math.isnan(records[-1].collapse)
    assert outcome.steps >= 1 and outcome.timings["steps"] > 0 and outcome.timings["evaluation"] > 0
    assert not outcome.model.training
    if name == "structguard":
        assert not math.isnan(records[-1].views["projector"]) and "align" in records[-1].terms
    else:
        assert list(records[-1].views) == ["backbone"]


def test_unlearning_is_deterministic_for_a_seed() -> None:
    runs = [create_method("structguard", **fast("structguard")).run(tiny_context()) for _ in range(2)]
    assert [(r.forget_acc, r.collapse, r.loss) for r in runs[0].records] == [
        (r.forget_acc, r.collapse, r.loss) for r in runs[1].records
    ]


def test_stopping_rule_stops_at_zero_forget_accuracy() -> None:
    outcome = create_method("neggrad", lr=0.5, max_epochs=50).run(tiny_context())
    assert outcome.reached_zero and outcome.records[-1].forget_acc == 0
    assert all(r.forget_acc > 0 for r in outcome.records[:-1])  # NegGrad: one forget batch per epoch


def test_structguard_waits_one_epoch_before_stopping() -> None:
    """Its random projector can put forget accuracy at 0 before anything was unlearned."""
    eager = create_method("structguard", **fast("structguard", stop_from_epoch=0, max_epochs=3)).run(tiny_context())
    default = create_method("structguard", **fast("structguard", max_epochs=3)).run(tiny_context())
    assert eager.records[0].forget_acc == 0 and eager.steps == 1
    assert default.records[-1].epoch >= 1


def test_adv_and_l2ul_share_one_proxy_set_and_both_pay_for_it() -> None:
    context = tiny_context()
    adv = create_method("adv", **fast("adv", max_epochs=1))
    l2ul = create_method("l2ul", **fast("l2ul", max_epochs=1))
    first, second = adv.run(context), l2ul.run(context)
    assert adv.proxy_images is l2ul.proxy_images
    assert adv.proxy_images.shape[0] == context.forget_idx.numel() * FAST["n_adv"]
    assert first.timings["proxy"] == pytest.approx(second.timings["proxy"], rel=0.05)


def test_mas_importance_is_min_max_normalised_and_inverted() -> None:
    context = tiny_context()
    importance = mas_importance(context.original, forget_batches(context, 128))
    for values in importance.values():
        assert values.min() >= 0 and values.max() <= 1
    conv = importance["stem.0.weight"]
    assert conv.min() == 0 and conv.max() == 1


@pytest.mark.parametrize(("anchor_dim", "on_output"), [(16, True), (8, False)])
def test_projector_aligns_on_output_only_when_widths_agree(anchor_dim: int, on_output: bool) -> None:
    context = tiny_context(anchor_dim=anchor_dim)  # the tiny backbone has 16-d features
    method = create_method("structguard", **fast("structguard", max_epochs=1))
    method.run(context)
    assert method.projector.align_on_output is on_output
    assert (context.projection is None) is on_output
    _, view = method.projector.outputs_and_view(torch.randn(3, 16))
    assert view.shape == (3, anchor_dim)


def test_importance_procedures_agree_and_only_the_authors_one_touches_batch_norm() -> None:
    """One pass over a one-batch proxy set equals the authors' cycling of it (train-mode
    gradients use batch statistics), but only the cycling leaves the running statistics changed."""
    context = tiny_context(k=8)
    method = create_method("structguard", **fast("structguard", n_adv=2, max_epochs=1))
    method.run(context)
    assert method.proxy_images.shape[0] < context.num_retained  # the authors' loop cycles it
    buffers = {n: b.clone() for n, b in method.model.named_buffers()}
    one_pass = method.estimate_importance(context)
    assert all(torch.equal(b, buffers[n]) for n, b in method.model.named_buffers())
    method.config = StructGuardConfig(**{**method.config.__dict__, "importance": "authors"})
    authors = method.estimate_importance(context)
    assert any(not torch.equal(b, buffers[n]) for n, b in method.model.named_buffers() if "running" in n)
    for name in one_pass:
        assert torch.allclose(one_pass[name], authors[name], rtol=1e-4, atol=1e-8)


def test_importance_is_estimated_after_the_first_update_by_default() -> None:
    method = create_method("structguard", **fast("structguard", max_epochs=3))
    outcome = method.run(tiny_context())
    assert method.importance is not None
    assert "reg" in outcome.records[2].terms and "reg" not in outcome.records[1].terms


def test_authors_schedule_never_regularises_a_single_batch_proxy_set() -> None:
    """Quirk Q3: with ≤ 2 proxy batches per epoch the released code never computes importance."""
    method = StructGuard(StructGuardConfig.as_released(**fast("structguard", max_epochs=3), proxy_source="original"))
    outcome = method.run(tiny_context())
    assert method.importance is None
    assert all("reg" not in r.terms for r in outcome.records)


def test_structguard_rejects_bad_options_and_a_missing_l2ul_run() -> None:
    with pytest.raises(ConfigError, match="reg_schedule='sometimes' is not one of every_step, authors"):
        create_method("structguard", reg_schedule="sometimes")
    with pytest.raises(ConfigError, match="importance='twice'"):
        StructGuard(StructGuardConfig(importance="twice"))
    with pytest.raises(ConfigError, match="needs the l2ul method"):
        create_method("structguard", **fast("structguard"), proxy_source="l2ul").run(tiny_context())


def test_structguard_can_attack_the_l2ul_model_as_released() -> None:
    context = tiny_context()
    create_method("l2ul", **fast("l2ul", max_epochs=1)).run(context)
    method = create_method("structguard", **fast("structguard", max_epochs=1), proxy_source="l2ul")
    method.run(context)
    assert len(context.proxy_cache) == 2  # the L2UL-model proxy is a set of its own


def test_deployed_structguard_model_goes_through_the_projector() -> None:
    method = create_method("structguard", **fast("structguard", max_epochs=1))
    outcome = method.run(tiny_context())
    x = torch.rand(2, 1, 8, 8)
    model = outcome.model
    assert torch.allclose(model(x), model.classifier(method.projector(model.features(x))))


def test_registry_takes_user_methods_and_rejects_unknown_ones() -> None:
    class Freeze(UnlearningMethod):
        """Does nothing: a user's method registered from outside the package."""

        name = "test_freeze"

        def setup(self, ctx):
            self.model = copy.deepcopy(ctx.original)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.0)

        def epoch_batches(self, ctx, epoch):
            return forget_batches(ctx, 128)

        def loss(self, ctx, batch, epoch, index, step):
            return self.model(batch[0]).sum() * 0 + torch.zeros((), requires_grad=True), {}

    with scratch_registries():  # later tests (the dashboard's method list) must not see it
        register_method(Freeze)
        assert "test_freeze" in list_methods()
        outcome = create_method("test_freeze", max_epochs=2).run(tiny_context())
    assert outcome.steps == 2 and not outcome.reached_zero and "test_freeze" not in list_methods()
    with pytest.raises(UnknownNameError, match="unknown method 'nope'"):
        create_method("nope")
    with pytest.raises(ConfigError, match="has no hyperparameter momentun"):
        create_method("adv", momentun=0.9)


def test_hyperparameter_types_are_checked_when_the_method_is_made() -> None:
    assert create_method("structguard", pgd_eps=2).config.pgd_eps == 2.0  # an int is a valid float
    assert isinstance(create_method("structguard", pgd_eps=2).config.pgd_eps, float)
    for key, value, message in [("lr", "fast", "must be a number"), ("max_epochs", 2.5, "must be an integer"),
                                ("importance", 3, "must be a string"), ("max_epochs", True, "must be an integer")]:
        with pytest.raises(ConfigError, match=f"structguard.{key} {message}"):
            create_method("structguard", **{key: value})


@pytest.mark.parametrize("name", list_methods())
def test_every_hyperparameter_says_in_one_line_what_it_does(name: str) -> None:
    config = METHODS.get(name).config_class()
    found = hyperparameters(name)
    assert [h.name for h in found] == list(config.__dataclass_fields__)
    for h in found:
        assert h.help.strip() and "\n" not in h.help, f"{name}.{h.name} has no one-line help"
        assert h.default == getattr(config, h.name) and isinstance(h.default, h.kind)
        assert h.choices is None or (h.kind is str and h.default in h.choices)


def test_key_hyperparameters_are_the_dashboards() -> None:
    keys = {name: {h.name for h in hyperparameters(name) if h.key} for name in list_methods()}
    basic = {"lr", "max_epochs"}
    assert keys["neggrad"] == keys["oracle"] == basic
    assert keys["adv"] == basic | {"n_adv", "pgd_eps", "target_rule"} and keys["l2ul"] == keys["adv"] | {"reg_lambda"}
    assert keys["structguard"] == keys["l2ul"] | {"projector_lr", "align_weight", "cr_weight", "structure_space"}
    importance = next(h for h in hyperparameters("structguard") if h.name == "importance")
    assert importance == Hyperparameter("importance", "one_pass", str, importance.help, False,
                                        ("one_pass", "authors", "authors_cycling"))


def test_every_method_has_a_code_version_and_declares_the_data_it_reads() -> None:
    assert LOOP_VERSION >= 1
    assert all(METHODS.get(name).version >= 1 for name in list_methods())
    access = {name: METHODS.get(name).data_access for name in list_methods()}
    assert set(access.values()) <= {"forget", "retain", "retrain"}
    assert all(access[name] == "forget" for name in ("neggrad", "adv", "l2ul", "structguard"))
    assert access["oracle"] == "retain" and access["retrain"] == "retrain"


def test_forget_and_proxy_loss_weights_by_batch_shares() -> None:
    forget_ce, proxy_ce = torch.tensor(2.0), torch.tensor(1.0)
    assert forget_and_proxy_loss(forget_ce, proxy_ce, 1, 3).item() == pytest.approx(-2.0 / 4 + 1.0 * 3 / 4)


def test_timer_phases_are_exclusive() -> None:
    timer = Timer()
    with timer.phase("outer"):
        time.sleep(0.02)
        with timer.phase("inner"):
            time.sleep(0.05)
    assert timer.seconds["inner"] >= 0.05
    assert 0.02 <= timer.seconds["outer"] < 0.05
