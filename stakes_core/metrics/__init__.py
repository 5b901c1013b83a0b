"""What is measured: accuracies (:mod:`.accuracy`), the instance-to-anchor structure and its
collapse (:mod:`.structure`), and the per-step record a method's run is made of
(:mod:`.records`, also the on-disk schema of ``steps.csv``)."""
