"""The methods of one request run side by side in threads (stakes_core.run.parallel): bit for bit
what one after another gives at the same thread count, callbacks in the caller's thread, a
cancel or a failure stops every method, a method's prerequisites and the global generator are
respected. Also the pieces that make it exact: no built-in method touches torch's global
generator, and StructGuard's projector draws what it drew before from its own generator."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from stakes_core.infra.errors import ConfigError
from stakes_core.infra.registry import scratch_registries
from stakes_core.methods import MethodConfig, UnlearningMethod, create_method, register_method
from stakes_core.methods.projector import Projector
from stakes_core.run.experiment import run_method
from stakes_core.run.parallel import check_workers, default_workers, run_methods
from tests.helpers import tiny_context

FAST = {"max_epochs": 2}
PROXY = {"max_epochs": 2, "n_adv": 3, "pgd_iterations": 3}
REQUEST = {"neggrad": FAST, "adv": PROXY, "l2ul": PROXY, "structguard": {**PROXY, "batch_size": 8}}


def curves(results):
    """Every per-step value of every method (NaN written as None, so that equal curves compare equal)."""
    def plain(value):
        return None if value != value else value
    return {name: [(r.step, r.forget_acc, plain(r.collapse), plain(r.loss), r.terms) for r in result.curve]
            for name, result in results.items()}


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_side_by_side_is_bit_identical_to_one_after_another(two_threads) -> None:
    parallel_context, sequential_context = tiny_context(), tiny_context()  # made with the same threads
    parallel = run_methods(parallel_context, REQUEST, run_method, workers=2)
    assert torch.get_num_threads() == 2  # restored after the run
    torch.set_num_threads(1)  # what each of the two workers had
    sequential = run_methods(sequential_context, REQUEST, run_method, workers=1)
    assert list(parallel) == list(REQUEST)
    assert curves(parallel) == curves(sequential)
    assert {n: r.metrics for n, r in parallel.items()} == {n: r.metrics for n, r in sequential.items()}
    for name in REQUEST:
        ours, theirs = parallel_context.unlearned[name].state_dict(), sequential_context.unlearned[name].state_dict()
        assert all(torch.equal(ours[key], theirs[key]) for key in ours), name


@pytest.mark.parametrize("name", ["neggrad", "adv", "l2ul", "structguard", "oracle"])
def test_shipped_methods_leave_the_global_generator_alone(name: str) -> None:
    method = create_method(name, **(PROXY if name not in ("neggrad", "oracle") else FAST))
    assert not method.uses_global_rng
    context = tiny_context()
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    method.run(context)
    assert torch.equal(torch.get_rng_state(), before)


def test_projector_from_its_generator_draws_what_the_global_generator_gave() -> None:
    torch.manual_seed(7)
    reference = Projector(12, 5)
    ours = Projector(12, 5, torch.Generator().manual_seed(7))
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert all(torch.equal(ours.state_dict()[k], reference.state_dict()[k]) for k in reference.state_dict())


def test_callbacks_run_in_the_callers_thread_and_results_arrive_as_methods_finish(two_threads) -> None:
    caller, threads, finished = threading.get_ident(), set(), []

    def on_step(method, record):
        threads.add(threading.get_ident())

    def on_result(method, result):
        threads.add(threading.get_ident())
        finished.append(method)

    run_methods(tiny_context(), REQUEST, run_method, on_step, on_result, workers=2)
    assert threads == {caller}
    assert sorted(finished) == sorted(REQUEST) and finished[0] == "neggrad"  # the shortest is done first


class _Stop(Exception):
    pass


def test_an_exception_from_a_callback_stops_every_method(two_threads) -> None:
    seen: dict[str, int] = {}

    def on_step(method, record):
        seen[method] = record.step
        if method == "adv" and record.step == 1:
            raise _Stop

    before = threading.active_count()
    with pytest.raises(_Stop):
        run_methods(tiny_context(), {"adv": {**PROXY, "max_epochs": 50}, "l2ul": {**PROXY, "max_epochs": 50}},
                    run_method, on_step, workers=2)
    assert threading.active_count() == before  # every worker has stopped before the raise


class _Broken(UnlearningMethod[MethodConfig]):
    name = "broken_in_a_thread"
    uses_global_rng = False

    def setup(self, ctx):
        raise ValueError("a bug in this method")

    def epoch_batches(self, ctx, epoch):
        return []

    def loss(self, ctx, batch, epoch, index, step):
        raise AssertionError


def test_a_failing_method_is_named_and_the_others_stop(two_threads) -> None:
    with scratch_registries():
        register_method(_Broken)
        with pytest.raises(ValueError, match="a bug in this method") as caught:
            run_methods(tiny_context(), {"adv": {**PROXY, "max_epochs": 50}, "broken_in_a_thread": {}},
                        run_method, workers=2)
    assert any("'broken_in_a_thread'" in note for note in caught.value.__notes__)


def test_structguard_as_released_waits_for_l2ul(two_threads) -> None:
    request = {"structguard": {**PROXY, "batch_size": 8, "proxy_source": "l2ul"}, "l2ul": PROXY}
    order = []
    results = run_methods(tiny_context(), request, run_method, on_result=lambda m, r: order.append(m), workers=2)
    assert order == ["l2ul", "structguard"] and set(results) == set(request)


class _GlobalDraws(UnlearningMethod[MethodConfig]):
    """Draws from the global generator; records how many such methods run at once."""

    name = "global_draws"
    running = 0
    most = 0
    lock = threading.Lock()

    def setup(self, ctx):
        with _GlobalDraws.lock:
            _GlobalDraws.running += 1
            _GlobalDraws.most = max(_GlobalDraws.most, _GlobalDraws.running)
        self.draw = torch.rand(3)
        time.sleep(0.2)
        with _GlobalDraws.lock:
            _GlobalDraws.running -= 1

    def epoch_batches(self, ctx, epoch):
        return []

    def loss(self, ctx, batch, epoch, index, step):
        raise AssertionError


class _GlobalDrawsToo(_GlobalDraws):
    name = "global_draws_too"


def test_methods_on_the_global_generator_never_run_side_by_side(two_threads) -> None:
    draws = {}

    def run_one(context, name, hyperparameters, on_step):
        method = create_method(name)
        torch.manual_seed(context.seed)
        method.setup(context)
        draws[name] = method.draw
        return None

    with scratch_registries():
        register_method(_GlobalDraws)
        register_method(_GlobalDrawsToo)
        run_methods(tiny_context(), {"global_draws": {}, "global_draws_too": {}}, run_one, workers=2)
    assert _GlobalDraws.most == 1
    assert torch.equal(draws["global_draws"], draws["global_draws_too"])  # each saw the seeded stream alone


def test_worker_counts() -> None:
    assert default_workers(4, "cuda") == 1
    assert default_workers(4, "cpu") == min(4, torch.get_num_threads())
    assert check_workers(8, 3, "cpu") == 3
    with pytest.raises(ConfigError, match="at least 1"):
        check_workers(0, 3, "cpu")
