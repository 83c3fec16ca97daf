"""What the rows say: statistics (:mod:`~harness.analysis.stats`), metric floors and ceilings
(:mod:`~harness.analysis.floors`), the claims ledger (:mod:`~harness.analysis.claims`) and the report
(:mod:`~harness.analysis.report`). Reads stored rows only, never torch."""
