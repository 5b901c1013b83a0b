"""Support for the notebooks, the classroom and the dashboard: grids of stored runs and the
ablations (:mod:`.studies`), display helpers (:mod:`.notebook`), the lesson
(:mod:`.teaching`) and the dashboard's extension point for user pages (:mod:`.pages`)."""
