"""The ``stakes`` command: pretrain, run unlearning experiments, tabulate results.

    stakes run                                   # the offline default: digits, k=16, seed 0
    stakes run --k 4 8 16 --seeds 0 1 2 3 4      # a grid, one run directory per (k, seed)
    stakes run --preset cifar10 --download --set structguard.pgd_eps=2.0
    stakes table runs/digits --paired structguard l2ul
    stakes figures runs/digits/k16/seed0         # every figure of a saved run (HTML, PNG when possible)
    stakes run --methods all --stop-at retrain   # every method and the retrain reference, the field's target
    stakes evaluate runs/digits/k16/seed0 --ulira   # gaps to retrain, loss attack, relearn time, U-LiRA
    stakes continual --rounds 5 --k 4 --seeds 0 1   # deletion requests one after another, round by round
    stakes --plugin relabel.py run --methods relabel   # a user's method (docs/extending.md)
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from stakes_core.analysis.embedding import EMBEDDING_ALGORITHMS
from stakes_core.anchors import ClassMismatchWarning, list_encoders
from stakes_core.anchors.variants import ANCHOR_SOURCES
from stakes_core.data import list_datasets
from stakes_core.data.forget import check_seed
from stakes_core.figures.export import EXPORT_FORMATS
from stakes_core.infra.accel import PRECISIONS
from stakes_core.infra.cache import check_writable_folder
from stakes_core.infra.errors import ConfigError, StakesError
from stakes_core.infra.plugins import PLUGINS_ENV, load_plugins, loaded_plugins
from stakes_core.methods import METHODS, PAPER_METHODS, list_methods
from stakes_core.methods.access import access_label
from stakes_core.models import list_models
from stakes_core.run.config import METHOD_GROUPS, STOP_TARGETS
from stakes_core.run.presets import list_presets
from stakes_core.run.results import RunResult, RunResultError

#: Errors that are the user's to fix: reported in one line, exit status 2. Anything else is a
#: bug (ours or in a user's method or plugin) and keeps its traceback.
USER_ERRORS = (StakesError,)

_python_formatwarning = warnings.formatwarning


def one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """The library's warnings (a damaged cache entry or stored run being rebuilt, classes that do
    not match) as one ``stakes: warning:`` line; any other warning as Python prints it."""
    if category.__module__.startswith("stakes_core"):
        return f"stakes: warning: {message}\n"
    return _python_formatwarning(message, category, filename, lineno, line)


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="digits",
        help=f"shipped preset ({', '.join(list_presets())}) or a JSON file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--data-root", help="where the dataset lives (CIFAR, imagefolder)")
    parser.add_argument("--download", action="store_true", help="download the dataset if missing (needs internet)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--from-scratch", action="store_true",
        help="pretrain the model on this machine (cached) instead of loading the shipped checkpoint")


def dataset_options(args: argparse.Namespace) -> dict:
    options = {}
    if args.data_root:
        options["root"] = args.data_root
    if args.download:
        options["download"] = True
    return options


def say(line: str) -> None:
    """A notice for the user (what a retrain will cost) on stderr, before the work starts."""
    print(f"stakes: {line}", file=sys.stderr, flush=True)


def command_pretrain(args: argparse.Namespace) -> None:
    from stakes_core.run.config import experiment_config
    from stakes_core.run.context import prepare_context

    config = experiment_config(
        args.preset, k=1, dataset_options=dataset_options(args), pretrain_epochs=args.epochs, device=args.device,
        from_scratch=args.from_scratch,
    )
    _, pretrained = prepare_context(config, progress=not args.quiet)
    source = pretrained.origin + ("; --from-scratch trains one here" if pretrained.source == "shipped" else "")
    print(f"{config.pretrain['model']} on {config.dataset['name']}: test_acc {pretrained.test_acc:.2f} % ({source})")


def command_run(args: argparse.Namespace) -> None:
    from stakes_core.report.table import summarize, target_warnings, to_markdown
    from stakes_core.run.config import experiment_config
    from stakes_core.run.experiment import run_experiment
    from stakes_core.run.runstore import store_result

    methods = args.methods
    for seed in args.seeds:  # every seed and the output folder are checked before the first run
        check_seed(seed)
    check_writable_folder(Path(args.out))
    runs = []
    for k in args.k or [None]:
        for seed in args.seeds:
            config = experiment_config(
                args.preset, k=k, seed=seed, methods=methods, overrides=args.set, encoder=args.encoder,
                descriptions=args.descriptions, dataset_options=dataset_options(args), device=args.device,
                precision=args.precision, channels_last=args.channels_last, anchor_source=args.anchors,
                from_scratch=args.from_scratch, stop_at=args.stop_at, retain_free_only=args.retain_free,
            )
            result = run_experiment(config, progress=not args.quiet, workers=args.workers, on_notice=say)
            directory = Path(args.out) / config.dataset["name"] / f"k{config.k}" / f"seed{seed}"
            store_result(result, directory, save_models=not args.no_models)  # all of the run or nothing
            runs.append(result)
            print(f"saved {directory}", file=sys.stderr)
            for line in target_warnings(result):
                print(f"stakes: warning: {line}", file=sys.stderr)
    print(to_markdown(summarize(runs)))


def command_table(args: argparse.Namespace) -> None:
    from stakes_core.run.results import find_runs

    if args.sweep:
        command_sweep_table(args)
        return
    if not args.runs:
        raise ConfigError("name run directories (or folders holding them), or a sweep with --sweep SPEC")
    directories = [d for root in args.runs for d in find_runs(root)]
    if not directories:
        raise RunResultError(f"no run directories (with summary.json) under {', '.join(args.runs)}")
    print_tables([RunResult.load(d) for d in directories], args)


def print_tables(runs: list[RunResult], args: argparse.Namespace) -> None:
    """The methods × k table of ``runs`` as ``stakes table`` asks, with its paired rows and correlation."""
    from stakes_core.report.table import (
        collapse_correlation,
        environment_warning,
        paired_difference,
        paired_markdown,
        summarize,
        to_csv,
        to_markdown,
    )

    rows = summarize(runs, args.metrics)
    metrics = tuple(rows[0]["cells"])
    mixed = environment_warning(runs)
    if mixed:
        print(f"stakes: warning: {mixed}", file=sys.stderr)
    print(to_csv(rows, metrics) if args.format == "csv" else to_markdown(rows, metrics))
    if args.paired:
        first, second = args.paired
        for metric in ("test_acc", "mean_collapse"):
            print()
            print(paired_markdown(paired_difference(runs, first, second, metric), first, second, metric))
    if args.correlation:
        print()
        for summary in ("mean_collapse", "final_collapse"):
            found = collapse_correlation(runs, summary)
            print(f"Spearman rank correlation of {summary} with test_acc over {found['n']} method runs "
                  f"(oracle excluded): rho = {found['rho']:.2f} (p = {found['p_value']:.1g})")


def command_figures(args: argparse.Namespace) -> None:
    from stakes_core.figures import write_report
    from stakes_core.run.continual_store import is_continual_run

    if is_continual_run(args.run_dir):
        command_continual_figures(args)
        return
    report = write_report(
        args.run_dir, args.out, args.format, args.methods, args.forget, args.retained, args.test, args.embedding,
        args.device, args.per_kind, progress=not args.quiet,
    )
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    timings = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in report.seconds.items())
    print(f"wrote {len(report.files)} files to {args.out or Path(args.run_dir) / 'figures'} ({timings})")


def command_evaluate(args: argparse.Namespace) -> None:
    from stakes_core.analysis import load_run
    from stakes_core.analysis.field import field_evaluation
    from stakes_core.data import choose_forget_indices
    from stakes_core.figures.export import save_figures
    from stakes_core.figures.membership import ulira_figure
    from stakes_core.report.table import rows_to_csv

    run = load_run(args.run_dir, args.device, progress=not args.quiet)
    exclude = None
    if args.exclude_k is not None:  # forget sets of one seed are nested: the larger one's shadows serve
        exclude = choose_forget_indices(run.dataset.num_train, args.exclude_k, run.result.seed)
    limit = None if args.max_cpu_minutes is None else 60.0 * args.max_cpu_minutes
    found = field_evaluation(run, args.methods, ulira=args.ulira, shadows=args.shadows, exclude=exclude,
                             progress=not args.quiet, max_cpu_seconds=limit)
    print(rows_to_csv(found.rows) if args.format == "csv" else markdown_rows(found.rows), end="")
    if found.ulira is not None and args.out:
        files, reason = save_figures({"ulira": ulira_figure(found.ulira)}, Path(args.out), "auto")
        print(f"wrote {', '.join(map(str, files))}" + (f" ({reason})" if reason else ""), file=sys.stderr)


def markdown_rows(rows: list[dict]) -> str:
    """Plain rows as a markdown table (numbers to 3 significant decimals)."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines) + "\n"


def parse_forget_set(text: str) -> list[int]:
    """``"3,17,42"`` → ``[3, 17, 42]`` (one explicit forget set of ``stakes continual --sets``)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"forget set '{text}' is not a comma-separated list of training indices") from None


def command_continual(args: argparse.Namespace) -> None:
    from stakes_core.report.continual import round_summary, summary_markdown
    from stakes_core.run.continual_store import continual_settings, run_continual

    sets = [parse_forget_set(text) for text in args.sets] if args.sets else None
    settings, arms = continual_settings(
        args.preset, k=args.k, rounds=args.rounds, methods=args.methods, sets=sets, overrides=args.set,
        dataset_options=dataset_options(args), device=args.device, from_scratch=args.from_scratch,
    )
    out = Path(args.out or Path("runs") / "continual" / f"{settings.config.dataset['name']}-k{settings.config.k}")
    check_writable_folder(out)
    run = run_continual(settings, arms, args.seeds, out=out, progress=not args.quiet)
    metrics = ("test_acc", "retain_acc", "forget_acc", "relapse", "collapse_original", "collapse_previous", "seconds")
    print(summary_markdown(round_summary(run.records), metrics, {"collapse_original": 3, "collapse_previous": 3}))
    print(f"saved {out} ({run.computed} rounds computed, the others from the run store); "
          f"figures: stakes figures {out}", file=sys.stderr)


def command_continual_figures(args: argparse.Namespace) -> None:
    from stakes_core.figures.continual import write_continual_figures

    files, skipped = write_continual_figures(args.run_dir, args.out, args.format, algorithm=args.embedding)
    if skipped:
        print(f"note: {skipped}", file=sys.stderr)
    print(f"wrote {len(files)} files to {args.out or Path(args.run_dir) / 'figures'}")


def command_sweep_table(args: argparse.Namespace) -> None:
    """``stakes table --sweep SPEC``: the sweep's stored cells, one table per setting."""
    from stakes_core.report.sweeps import pool_cells
    from stakes_core.run.sweep import build_sweep, stored_results
    from stakes_core.run.sweep_spec import load_spec

    sweep = build_sweep(load_spec(args.sweep), args.store)
    found, missing = stored_results(sweep)
    if not found:
        raise RunResultError(f"none of the {len(sweep.cells)} cells of {args.sweep} is stored in {sweep.store} yet")
    if missing:
        print(f"stakes: warning: {len(missing)} of the {len(sweep.cells)} cells are not stored yet and are left out "
              f"(stakes sweep {args.sweep} runs them)", file=sys.stderr)
    for title, runs in pool_cells(found, sweep.axes):
        print(f"### {title}\n")
        print_tables(runs, args)
        print()


def command_sweep(args: argparse.Namespace) -> None:
    from stakes_core.run.driver import default_folder, plan, run_sweep, summary_lines
    from stakes_core.run.executors import ExecutorOptions, cores, create_executor
    from stakes_core.run.sweep import build_sweep
    from stakes_core.run.sweep_spec import SweepError, load_spec, spec_from_arguments

    given = {"preset": args.preset, "k": args.k, "seed": args.seeds, "method": args.methods,
             "encoder": args.encoder, "anchors": args.anchors, "device": args.device, "data_root": args.data_root}
    spec = spec_from_arguments(given, args.set, load_spec(args.spec) if args.spec else None)
    sweep = build_sweep(spec, args.store, args.gpus_per_cell)
    found = plan(sweep, args.retry_failed)
    print(found.headline())
    if args.dry_run:
        print(f"estimate: {found.estimate_line(args.workers or cores())}")
        width = max(len(cell.label(sweep.axes)) for cell in sweep.cells)
        for cell, state in zip(sweep.cells, found.states):
            print(f"  {cell.label(sweep.axes):<{width}}  {state}")
        return
    options = ExecutorOptions(
        workers=args.workers, threads=args.threads, address=args.address, connect_timeout=args.connect_timeout,
        partition=args.partition, time_min=args.time, gpus_per_cell=args.gpus_per_cell, mem_gb=args.mem_gb,
        folder=default_folder(sweep),
    )
    executor = create_executor(args.executor, options)
    print(f"estimate: {found.estimate_line(executor.workers)}")
    skipped = found.count("failed before") if not args.retry_failed else 0
    if skipped:
        print(f"{skipped} cells failed before and are left alone (--retry-failed runs them again)")
    if found.to_run:
        print(f"running on {executor.describe()}", file=sys.stderr)
    report = run_sweep(sweep, found.to_run, executor, progress=not args.quiet)
    for line in summary_lines(report, len(found.to_run)):
        print(line)
    if report.failures or skipped:
        failed = len(report.failures) + skipped
        raise SweepError(f"{failed} of the sweep's {len(sweep.cells)} cells failed (see above; --retry-failed "
                         "runs them again)")


def add_sweep_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``stakes sweep``: a grid of runs on a process pool, a Ray cluster or SLURM."""
    from stakes_core.run.executors import EXECUTORS
    from stakes_core.run.sweep_spec import FIELDS

    fields = "\n".join(f"  {name:<16}{field.help}" for name, field in FIELDS.items())
    sweep = commands.add_parser(
        "sweep", help="a grid of runs (one method each) on a process pool, Ray or SLURM; stored cells are skipped",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"fields any --set or spec file may fix or vary (docs/sweeps.md):\n{fields}\n"
               "  METHOD.KEY      a hyperparameter of one method (only its cells multiply)",
    )
    sweep.add_argument("spec", nargs="?", help="a YAML or TOML spec file (options below add to or replace it)")
    sweep.add_argument("--preset", nargs="+", help="preset(s) (default digits)")
    sweep.add_argument("--k", nargs="+", help="forget-set sizes (default: the preset's)")
    sweep.add_argument("--seeds", nargs="+", help="seeds: numbers or ranges such as 0-9 (default 0)")
    sweep.add_argument("--methods", nargs="+", help="methods, one per cell (default the paper's four)")
    sweep.add_argument("--encoder", nargs="+", help="anchor encoder(s)")
    sweep.add_argument("--anchors", nargs="+", help=f"anchor source(s): {', '.join(ANCHOR_SOURCES)}")
    sweep.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2",
        help="a field or METHOD.KEY hyperparameter: one value fixes it, several make an axis")
    sweep.add_argument("--device", help="cpu, cuda, cuda:N, mps (default auto: cuda with --gpus-per-cell)")
    sweep.add_argument("--data-root", help="where the dataset lives (CIFAR, imagefolder)")
    sweep.add_argument("--store", help="the run store, a folder every worker sees (default: the spec's, else the "
                       "cache's runs)")
    sweep.add_argument("--executor", choices=list(EXECUTORS), default="local")
    sweep.add_argument("--workers", type=int, help="cells at once (default: the cores; slurm: all queued)")
    sweep.add_argument("--threads", type=int, help="torch threads (CPUs) per cell (default: cores / workers)")
    sweep.add_argument("--address", help="ray: join the cluster at host:port or ray://host:port")
    sweep.add_argument("--connect-timeout", type=float, default=30.0, help="ray: seconds to wait for --address")
    sweep.add_argument("--partition", help="slurm: partition")
    sweep.add_argument("--time", type=int, default=60, help="slurm: time limit per cell in minutes")
    sweep.add_argument("--gpus-per-cell", type=int, default=0, help="ray and slurm: GPUs per cell")
    sweep.add_argument("--mem-gb", type=float, help="slurm: memory per cell")
    sweep.add_argument("--dry-run", action="store_true", help="list the cells, what is stored and the time left")
    sweep.add_argument("--retry-failed", action="store_true", help="run the cells that failed before again")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(handler=command_sweep)


def command_list(args: argparse.Namespace) -> None:
    from stakes_core.figures import list_figures
    from stakes_core.lab.pages import list_pages

    for title, names in (
        ("presets", list_presets()), ("datasets", list_datasets()), ("models", list_models()),
        ("methods", [f"{name} ({access_label(METHODS.get(name).data_access)})" for name in list_methods()]),
        ("encoders", list_encoders()), ("figures", list_figures()),
        ("pages", [page.title for page in list_pages()]), ("plugins", loaded_plugins()),
    ):
        print(f"{title}: {', '.join(names) or '-'}")


def command_cache_list(args: argparse.Namespace) -> None:
    from stakes_core.infra.cache import cache_root
    from stakes_core.infra.cache_admin import cache_usage, human_size

    usage = cache_usage()
    print(f"cache: {cache_root()}")
    print(f"{'part':<13}{'entries':>8}{'size':>12}  holds")
    for part in usage:
        entries, size = (str(part.entries), human_size(part.size)) if part.exists else ("-", "absent")
        print(f"{part.name:<13}{entries:>8}{size:>12}  {part.what}")
    total = sum(part.size for part in usage)
    print(f"{'total':<13}{sum(part.entries for part in usage):>8}{human_size(total):>12}")


def command_cache_clear(args: argparse.Namespace) -> None:
    from stakes_core.infra.cache_admin import PART_NAMES, clear_parts, human_size

    names = list(PART_NAMES) if args.all else [name for name in PART_NAMES if getattr(args, name)]
    if not names:
        raise ConfigError(f"say what to clear: {', '.join(f'--{name}' for name in PART_NAMES)} or --all")
    removed = clear_parts(names)
    for part in removed:
        if part.exists:
            entries = f"{part.entries} entr{'y' if part.entries == 1 else 'ies'}"
            print(f"removed {part.name}: {entries}, {human_size(part.size)} ({part.path})")
        else:
            print(f"{part.name}: absent, nothing to remove ({part.path})")
    print(f"freed {human_size(sum(part.size for part in removed))}")


def add_cache_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``stakes cache list`` and ``stakes cache clear --runs|--checkpoints|...|--all``."""
    from stakes_core.infra.cache_admin import CACHE_PARTS

    cache = commands.add_parser("cache", help="what the cache holds (list) and removing parts of it (clear)")
    actions = cache.add_subparsers(dest="cache_command", required=True)
    listing = actions.add_parser("list", help="each part of the cache with its entries and size")
    listing.set_defaults(handler=command_cache_list)
    clear = actions.add_parser("clear", help="remove parts of the cache (asks nothing)")
    for part in CACHE_PARTS:
        clear.add_argument(f"--{part.name}", action="store_true", help=f"remove the {part.what}")
    clear.add_argument("--all", action="store_true", help="remove every part above")
    clear.set_defaults(handler=command_cache_clear)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stakes", description="Structure-faithful instance unlearning (StructGuard).")
    parser.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
        help=f"import a module or .py file that registers methods, datasets, encoders, figures or pages "
             f"(repeatable; also {PLUGINS_ENV}, see docs/extending.md)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    pretrain = commands.add_parser(
        "pretrain", help="load the preset's shipped model (--from-scratch: pretrain it here, cached)"
    )
    add_experiment_arguments(pretrain)
    pretrain.add_argument("--epochs", type=int, help="override the preset's pretraining epochs")
    pretrain.set_defaults(handler=command_pretrain)

    run = commands.add_parser("run", help="unlearn k instances with several methods and save the results")
    add_experiment_arguments(run)
    run.add_argument("--methods", nargs="+", default=list(PAPER_METHODS),
        help="method names (stakes methods lists them) or groups: " + "; ".join(
            f"{group}: {what}" for group, what in METHOD_GROUPS.items()))
    run.add_argument("--stop-at", choices=list(STOP_TARGETS), default="zero",
        help="; ".join(f"{target}: {what}" for target, what in STOP_TARGETS.items()))
    run.add_argument("--retain-free", action="store_true",
        help="refuse methods that read the retained images or retrain (the paper's protocol)")
    run.add_argument("--k", type=int, nargs="+", help="forget-set sizes (default: the preset's largest)")
    run.add_argument("--seeds", type=int, nargs="+", default=[0])
    run.add_argument("--encoder", help="anchor encoder: minilm, clip:ARCH/PRETRAINED, random:DIM")
    run.add_argument("--descriptions", help="shipped description set or a JSON file (class → attributes)")
    run.add_argument("--anchors", choices=ANCHOR_SOURCES, default="text",
                     help="; ".join(f"{name}: {label}" for name, label in ANCHOR_SOURCES.items()))
    run.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE", help="override a hyperparameter")
    run.add_argument("--out", default="runs", help="results folder (default: runs)")
    run.add_argument("--no-models", action="store_true", help="do not save the unlearned weights")
    run.add_argument("--workers", type=int,
                     help="methods run at once, each in a thread with torch threads / workers intra-op threads "
                          "(default: one per torch thread on the CPU, 1 on a GPU; 1 runs them one after another)")
    run.add_argument("--precision", choices=PRECISIONS, default="fp32",
                     help="bf16 autocasts attacks and update steps (GPUs; changes results beyond rounding)")
    run.add_argument("--channels-last", action="store_true",
                     help="NHWC memory layout (faster on GPUs and, for narrow models, CPUs; rounding-level changes)")
    run.set_defaults(handler=command_run)

    continual = commands.add_parser(
        "continual", help="deletion requests one after another: T disjoint forget sets, each from the last model"
    )
    add_experiment_arguments(continual)
    continual.add_argument("--rounds", type=int, default=5, help="number of requests T (default 5)")
    continual.add_argument("--k", type=int, help="images per request (default: the preset's largest k)")
    continual.add_argument("--sets", nargs="+", metavar="I,J,...",
        help="explicit forget sets, one comma-separated list per round (instead of --rounds and --k)")
    continual.add_argument("--methods", nargs="+", default=list(PAPER_METHODS),
        help="methods; structguard@previous takes S_ori from the previous round's model (default: @original)")
    continual.add_argument("--seeds", type=int, nargs="+", default=[0])
    continual.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
        help="override a hyperparameter")
    continual.add_argument("--out", help="results folder; running into it again resumes it "
        "(default: runs/continual/DATASET-kK)")
    continual.set_defaults(handler=command_continual)

    evaluate = commands.add_parser(
        "evaluate", help="the field's evaluation of a saved run: gaps to retrain, loss attack, relearn time, U-LiRA"
    )
    evaluate.add_argument("run_dir", help="a run directory saved with its models")
    evaluate.add_argument("--methods", nargs="+", help="methods to evaluate (default: every one with saved weights)")
    evaluate.add_argument("--ulira", action="store_true",
        help="also U-LiRA-style likelihood ratios: trains (and caches) 2 × --shadows models first; its cost is "
             "said, and refused on a CPU above --max-cpu-minutes")
    evaluate.add_argument("--shadows", type=int, default=16, help="U-LiRA shadow pairs (default 16)")
    evaluate.add_argument("--exclude-k", type=int,
        help="U-LiRA: leave out the forget set of this larger k (same seed) in the OUT shadows, to share them")
    evaluate.add_argument("--max-cpu-minutes", type=float, default=60.0,
        help="U-LiRA: refuse shadow training estimated above this on a CPU (default 60)")
    evaluate.add_argument("--format", choices=("md", "csv"), default="md")
    evaluate.add_argument("--out", help="folder for the U-LiRA figure")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(handler=command_evaluate)

    table = commands.add_parser("table", help="methods × k table (mean ± sd over seeds) from saved runs")
    table.add_argument("runs", nargs="*", help="run directories or folders holding them")
    table.add_argument("--sweep", metavar="SPEC", help="the stored cells of a sweep's spec file, one table per setting")
    table.add_argument("--store", help="with --sweep: the run store (default: the spec's, else the cache's)")
    table.add_argument("--format", choices=("md", "csv"), default="md")
    table.add_argument("--metrics", nargs="+",
        help="columns (default: retain_acc forget_acc test_acc mean_collapse steps seconds, plus gap_retain "
             "gap_forget gap_test avg_gap when every run holds the retrain reference)")
    table.add_argument("--paired", nargs=2, metavar=("A", "B"), help="also print per-seed A − B differences")
    table.add_argument("--correlation", action="store_true",
        help="rank correlation of mean and final collapse with test_acc")
    table.set_defaults(handler=command_table)

    figures = commands.add_parser("figures", help="write every analysis figure of saved run(s)")
    figures.add_argument("run_dir", help="a run directory, a folder of runs (cross-run figures for all of them) or "
                         "a continual run folder (round curves and round-1/round-T layouts)")
    figures.add_argument("--out", help="output folder (default: RUN_DIR/figures)")
    figures.add_argument("--format", choices=EXPORT_FORMATS, default="auto",
                         help="html, png or svg (HTML always; auto adds PNG when kaleido finds Chromium)")
    figures.add_argument("--methods", nargs="+", help="methods to show (default: every method with saved weights)")
    figures.add_argument("--embedding", choices=EMBEDDING_ALGORITHMS, default="umap",
        help="2-D layout (pca is fastest)")
    figures.add_argument("--forget", type=int, nargs="+", help="forgotten training indices to show")
    figures.add_argument("--retained", type=int, nargs="+", help="retained training indices to show")
    figures.add_argument("--test", type=int, nargs="+", help="test indices to show")
    figures.add_argument("--per-kind", type=int, default=4, help="instances of each kind shown by default")
    figures.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    figures.add_argument("--quiet", action="store_true", help="no progress bars")
    figures.set_defaults(handler=command_figures)

    listing = commands.add_parser(
        "list", help="what can be named: presets, datasets, models, methods, encoders, figures, pages; loaded plugins"
    )
    listing.set_defaults(handler=command_list)
    add_cache_parser(commands)
    add_sweep_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("always", ClassMismatchWarning)
    warnings.formatwarning = one_line_warning
    try:
        load_plugins(args.plugin, source="--plugin")
        args.handler(args)
    except USER_ERRORS as error:
        print(f"stakes: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stakes: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
