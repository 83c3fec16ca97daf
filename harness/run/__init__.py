"""Running jobs: one job (:mod:`~harness.run.execute`, with the training loop in
:mod:`~harness.run.train` and the rows of failed or skipped jobs in :mod:`~harness.run.outcome`), a whole
suite (:mod:`~harness.run.orchestrate`), where jobs run (:mod:`~harness.run.executors`), leases between
processes (:mod:`~harness.run.lease`), cost-sweep limits (:mod:`~harness.run.limits`) and the progress
display (:mod:`~harness.run.progress`)."""
