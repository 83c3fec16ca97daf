"""The claims ledger: what the papers (and the research notes) claim, tested against the result rows.

Claims are data in ``harness/literature.yaml`` beside each paper (``schema``); their verdicts are
computed from result rows and never written by hand (``verdicts``, with the cost claims in ``sweeps``
and the durability across training in ``durability``); ``evidence`` holds what a verdict rests on.
The report's Claims section (``harness.analysis.report.claims``) and ``harness claims`` put them into words.
Nothing here imports torch or the report.
"""

from __future__ import annotations

from harness.analysis.claims.evidence import VERDICTS, Verdict
from harness.analysis.claims.schema import CLAIMS_PATH, Claim, load_claims
from harness.analysis.claims.verdicts import evaluate, evaluate_claims

__all__ = ["CLAIMS_PATH", "VERDICTS", "Claim", "Verdict", "evaluate", "evaluate_claims", "load_claims"]
