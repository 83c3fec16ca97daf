"""A suite YAML to a grid of jobs: the file with its includes and line numbers
(:mod:`~harness.suite.source`), the typed sections (:mod:`~harness.suite.spec`), a job and its identity
(:mod:`~harness.suite.jobs`), budget matching (:mod:`~harness.suite.match`) and the loader that composes
them (:mod:`~harness.suite.load`)."""
