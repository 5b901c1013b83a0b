"""The run pipeline: a preset and the user's choices become an
:class:`~stakes_core.run.experiment.ExperimentConfig` (:mod:`.presets`, :mod:`.experiment`),
its shared context is built (:mod:`.context`), every method runs on it, and the
:class:`~stakes_core.run.results.RunResult` is saved to a run folder or the run store
(:mod:`.results`, :mod:`.runstore`)."""
