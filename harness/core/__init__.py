"""The bottom layer, imported by every other: errors (:mod:`~harness.core.errors`), typed configs built
from plain mappings with file:line:key refusals (:mod:`~harness.core.config`), YAML with line numbers
(:mod:`~harness.core.yamlio`), the model/task/preset registry (:mod:`~harness.core.registry`), the device
and its process-wide settings (:mod:`~harness.core.device`, :mod:`~harness.core.heap`) and the version."""
