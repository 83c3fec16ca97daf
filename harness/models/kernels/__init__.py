"""Fast kernels of the models that need them, kept apart from the models' paper-shaped code.

- :mod:`~harness.models.kernels.lsh_attention`: Reformer's batched multi-round LSH attention.
- :mod:`~harness.models.kernels.switch_stack`: the Residual Shuffle-Exchange network's switch layers
  and head as one autograd node with a hand-written, recomputing backward.
"""
