"""``harness check``, the regression gate: each model's parameters, FLOPs, memory, instructions per
training step and relative step time against a committed baseline (default ``results/baseline.json``).

Every variant of a suite (default ``suites/quick.yaml``) is profiled on one shape (:mod:`.subjects`:
the suite's first cost-sweep cell, else its first training task at the training batch; the shape is
stored per model and a changed shape fails) with its job's own training step
(:class:`harness.measure.step.TrainStep`) at learning rate 0, so that the weights and the work stay the
same from step to step. What is compared:

- ``params``, ``params_applied``, ``flops_fwd``: exact (:mod:`.compare`).
- ``act_bytes`` and, on the CPU, ``mem_bytes`` (``cpu_estimate``): deterministic, so more bytes than the
  baseline fail and fewer pass as an improvement; on CUDA, ``mem_bytes`` may grow by 2%.
- ``instructions``: instructions per training step, counted under valgrind's callgrind on the counted
  steps alone (:mod:`.counting`, :mod:`harness.measure.instructions`; warm-up, model building and
  imports outside the count), all models in one valgrind process, each in a child forked from it
  (one per CPU core at a time). They do not depend on
  what else the machine does. Measured spread: two builds of one model counted in one process agreed
  within 0.011%; reruns in separate processes (another working directory and environment, another copy
  of the code) within 0.16% (tiny vanilla models, 14 million instructions a step) and within 0.15% for
  17 quick.yaml models in an earlier, sequential layout of the count. More than the baseline's
  ``tolerance.instructions`` (default 0.5%, three times that spread) above the baseline fails, naming
  the model and the change; a slowdown of about 3% planted in a model's forward counts +2.7%.
  The counts hold for the machine and build the baseline records (``machine``: CPU model, instruction
  set natively and under valgrind, Python, valgrind and library versions); anywhere else the gate says
  they do not apply there, which is not a regression, and the wall-clock check decides.
- ``time_rel``: each model's step time divided by that of its task's baseline variant (``baseline:``;
  in quick.yaml vanilla-post for the token models and resnet for the image models), timed round-robin
  in this process on one thread (:mod:`.wallclock`, order rotating each round, the fastest of
  ``STEPS_PER_ROUND`` steps kept per round) over ``--repeats`` rounds. The ratio reported is the median
  over rounds with a 95% distribution-free interval (order statistics); it fails only when the interval's
  lower end lies more than ``tolerance.time_rel`` (default 35%) above the baseline's ratio, and again
  when timed a second time. It is the backstop for slowdowns instructions do not see (memory traffic,
  waits) and the only speed check where the counts do not apply.

``--update --reason TEXT`` writes a new baseline on purpose, from a clean tree (``--allow-dirty``
otherwise), recording the commit and the reason; commit the two together. A variant missing from the
baseline is ``new`` (it passes), one missing from the suite ``gone``.
"""

from harness.cli.gate.command import run_check

__all__ = ["run_check"]
