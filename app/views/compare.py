"""Compare: the methods × metrics table of the current run and of every stored seed and k of
the same setting, with downloads."""

import streamlit as st

from stakes_core.report.table import (
    environment_warning,
    rows_to_csv,
    run_rows,
    summarize,
    target_warnings,
    to_csv,
    to_markdown,
)

import cached
import lab
from widgets import run_table, skipped_runs_notice

st.title("Compare")
config = lab.config_or_stop()
directory = lab.run_or_stop()
result = cached.run_result(str(directory))
st.subheader(f"This run: k = {result.k}, seed {result.seed}")
run_table(result)
for line in target_warnings(result):
    st.warning(f"{line}: its row is not comparable with those that reached 0.",
               icon=":material/warning:")
left, right = st.columns(2)
left.download_button("Download CSV", rows_to_csv(run_rows(result)), file_name=f"{directory.name}.csv",
                     mime="text/csv", icon=":material/download:")
right.download_button("Download summary.json", (directory / "summary.json").read_text(),
                      file_name=f"{directory.name}.json", mime="application/json", icon=":material/download:")

found = cached.siblings(config)
siblings = found.runs
seeds = sorted({run.seed for run in siblings})
st.subheader(f"This setting over every stored seed and k ({len(siblings)} runs)")
st.caption(f"Seeds {', '.join(map(str, seeds))}; cells are mean ± sd over seeds; reached_target counts the runs "
           "whose forget accuracy reached 0. Run other seeds or k with the same methods and hyperparameters to add "
           "rows.")
skipped_runs_notice(found.skipped)
mixed = environment_warning(siblings)
if mixed:
    st.warning(f"{mixed[0].upper()}{mixed[1:]}.", icon=":material/warning:")
rows = summarize(siblings)
st.markdown(to_markdown(rows))
st.download_button("Download this table (CSV)", to_csv(rows), file_name=f"{config.dataset['name']}-table.csv",
                   mime="text/csv", icon=":material/download:")
