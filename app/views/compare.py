"""Compare: the methods × metrics table of the current run and of every stored seed and k of
the same setting, with downloads; with the retrain reference in the run, each model's gap to it,
and a filter that keeps only the retain-free methods (the paper's protocol)."""

import streamlit as st

from stakes_core.analysis.ulira import ulira_plan
from stakes_core.figures.membership import ulira_figure
from stakes_core.figures.tables import glossary
from stakes_core.infra.errors import StakesError
from stakes_core.report.sweeps import axis_choices, cell_rows, filter_cells, pool_cells
from stakes_core.report.table import (
    GAP_METRICS,
    METRICS,
    TARGET,
    environment_warning,
    rows_to_csv,
    run_rows,
    summarize,
    target_warnings,
    to_csv,
)

import cached
import lab
from widgets import run_table, show_raw_table, show_summary_table, show_table, skipped_runs_notice

st.title("Compare")
config = lab.config_or_stop()
directory = lab.run_or_stop()
result = cached.run_result(str(directory))
st.subheader(f"This run: k = {result.k}, seed {result.seed}")
run_table(result)
for line in target_warnings(result):
    st.warning(f"{line}: its row is not comparable with those that reached the target.",
               icon=":material/warning:")
left, right = st.columns(2)
left.download_button("Download CSV", rows_to_csv(run_rows(result)), file_name=f"{directory.name}.csv",
                     mime="text/csv", icon=":material/download:")
right.download_button("Download summary.json", (directory / "summary.json").read_text(),
                      file_name=f"{directory.name}.json", mime="application/json", icon=":material/download:")

found = cached.siblings(config)
siblings = found.runs
seeds = sorted({run.seed for run in siblings})
st.subheader(f"This setting over every stored seed and k ({len(siblings)} run{'' if len(siblings) == 1 else 's'})")
st.caption(f"Seed{'' if len(seeds) == 1 else 's'} {', '.join(map(str, seeds))}; cells are mean ± sd over the seeds "
           "(one value when there is one run); 'reached target' counts the runs whose forget accuracy reached the "
           "target. "
           "Run other seeds or k with the same methods and hyperparameters to add rows.")
skipped_runs_notice(found.skipped)
mixed = environment_warning(siblings)
if mixed:
    st.warning(f"{mixed[0].upper()}{mixed[1:]}.", icon=":material/warning:")
rows = summarize(siblings)
if st.toggle("Retain-free only (the paper's protocol)", key="compare_retain_free",
             help="Hide the models that read the retained images or retrain on them (the oracle, the field's "
                  "references, retrain); the original stays as the reference row."):
    rows = [row for row in rows if row["data"] in ("D_f only", "–")]
show_summary_table(rows)
if "retrain" not in result.methods:
    st.caption("Add **retrain** on the Setup page to see each model's gap to a model retrained without the "
               "forget set (the field's gold reference).")
with st.expander("What the columns mean", expanded=True):
    st.markdown(glossary(["data", "retain_acc", "forget_acc", "test_acc", "mean_collapse", "final_collapse", "steps",
                          "seconds", *GAP_METRICS, "reached_target"]))
st.download_button("Download this table (CSV)", to_csv(rows), file_name=f"{config.dataset['name']}-table.csv",
                   mime="text/csv", icon=":material/download:")

st.subheader("By the field's standards")
st.caption("The loss attack (logistic regression on per-image loss, forgotten vs test images: 0.5 is ideal; below, "
           "the forgotten images look *more* unseen than unseen ones, over-forgetting), the relearn time (steps of "
           "fine-tuning on the forget set until the original's forget accuracy returns; more = less left behind) "
           "and, on request, U-LiRA-style per-image membership scores from shadow models trained with and without "
           "the forget set.")
field_columns = ["method", "data", "loss_mia", "loss_auc", "relearn_steps"]
if st.toggle("Measure them", key="compare_field", help="A few seconds on digits; cached per run."):
    try:
        evaluation = cached.field(str(directory), False)
    except StakesError as error:
        st.error(str(error), icon=":material/error:")
    else:
        show_table([{key: row[key] for key in field_columns} for row in evaluation.rows])
        st.markdown(glossary(["loss_mia", "loss_auc", "relearn_steps", "ulira_share"]))
        plan = ulira_plan(cached.loaded_run(str(directory)))
        st.caption(f"{plan.cost_line()}.")
        if plan.uncached == 0 or st.button("Train the shadows and score", icon=":material/model_training:"):
            try:
                scored = cached.field(str(directory), True)
            except StakesError as error:
                st.error(str(error), icon=":material/error:")
            else:
                st.plotly_chart(ulira_figure(scored.ulira), key="ulira_chart")

st.subheader("A sweep's cells")
st.caption("The stored cells of a `stakes sweep` spec file (docs/sweeps.md), filtered by axis, and the tables "
           "they pool into: one per setting, methods × k over the seeds.")
spec_file = st.text_input("Sweep spec file (YAML or TOML)", key="compare_sweep_spec", placeholder="grid.yaml")
if spec_file:
    try:
        sweep, cells, missing = cached.sweep_cells(spec_file)
    except StakesError as error:
        st.error(str(error), icon=":material/error:")
    else:
        st.caption(f"{len(cells)} of {len(sweep.cells)} cells are stored in {sweep.store}"
                   + (f"; `stakes sweep {spec_file}` runs the other {len(missing)}." if missing else "."))
        chosen = {axis: st.multiselect(axis, values, default=values, format_func=str, key=f"sweep_axis_{axis}")
                  for axis, values in axis_choices(cells, sweep.axes).items()}
        shown = filter_cells(cells, chosen)
        show_raw_table(cell_rows(shown, sweep.axes, METRICS), [*sweep.axes, *METRICS, TARGET])
        for title, runs in pool_cells(shown, sweep.axes):
            st.markdown(f"**{title}**")
            show_summary_table(summarize(runs))
