"""Fast kernels of the models that need them, kept apart from the models' paper-shaped code.

A model file reads like its paper. Where plain PyTorch is too slow, or keeps too much memory, at the
lengths the suites run, the model calls a kernel from here for the same maths, and keeps beside it a
plain *reference path*, ``model(x, reference=True)``, written from the paper with plain autograd.
tests/test_kernels_reference.py checks every kernel against its reference, on values and gradients.
The model runs the kernel by default, so committed results reproduce bit for bit.

- :mod:`~harness.models.kernels.lsh_attention`: Reformer's batched multi-round LSH attention (sorting,
  chunking, the masks as one additive term edited in place, a fused softmax + logsumexp autograd
  Function). Reference: :func:`harness.models.lsh.lsh_attention_reference`.
- :mod:`~harness.models.kernels.switch_stack`: the Residual Shuffle-Exchange network's switch layers
  and head as one autograd node with a hand-written, recomputing backward. Reference:
  ``ShuffleExchange.reference_forward`` in :mod:`harness.models.shuffle_exchange`.

Kernels import torch and nothing of the models they serve, except that the LSH kernel takes the
self-mask value and the rotation draw from :mod:`harness.models.lsh`, so that both paths draw the
same rotations from the same RNG. The RSE kernel gets the model's constants through its
:class:`~harness.models.kernels.switch_stack.StackSpec`.
"""
