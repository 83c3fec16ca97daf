"""The command line and the commands built on every layer below: ``harness run``, ``report``, ``claims``,
``list``, ``profile``, ``prune``, ``verify``, ``check``, ``export`` (:mod:`harness.cli.main`), the suite and
job listings (:mod:`harness.cli.listing`), the regression gate (:mod:`harness.cli.gate`) and the
reproduction check (:mod:`harness.cli.verify`)."""

from harness.cli.main import main

__all__ = ["main"]
