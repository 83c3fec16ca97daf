"""Stored results: the result row and its migrations (:mod:`~harness.results.rows`), the append-only
JSON-lines store (:mod:`~harness.results.store`), the code state rows record
(:mod:`~harness.results.provenance`) and MLflow export (:mod:`~harness.results.tracking`). No torch."""
