"""Numbers from saved runs: methods × k tables with paired differences (:mod:`.table`), paired
comparisons of variants with 95 % intervals (:mod:`.comparison`) and the paper's own numbers
(:mod:`.paper`). Reads results; never runs anything."""
