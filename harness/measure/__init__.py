"""What a model costs: the one training step (:mod:`~harness.measure.step`), parameters, FLOPs
(:mod:`~harness.measure.flops`), activation memory and step time (:mod:`~harness.measure.costs`).
Knows models and tasks, nothing of suites, rows or reports."""
