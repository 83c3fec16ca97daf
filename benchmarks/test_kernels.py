"""Microbenchmarks of the sequence-mixing kernels, forward + backward, with pytest-benchmark.

Kernels: full attention (fused SDPA and the materialised math path), Reformer's LSH attention (2 hash
rounds, 64-token chunks), one Benes block of the Residual Shuffle-Exchange network, and the lambda layer
(lambda convolution, r=23) against global self-attention over the pixels. Token kernels run at batch 1,
2 heads of width 32 (d_model 64); image kernels at batch 2, 64 channels, on square maps.

    make bench                                   # the vanilla-vs-torch script, then this file (autosaved)
    pytest benchmarks/test_kernels.py --benchmark-autosave          # save a run under .benchmarks/
    pytest benchmarks/test_kernels.py --benchmark-compare           # compare with the last saved run
    pytest benchmarks/test_kernels.py --benchmark-compare=0001 --benchmark-compare-fail=median:15%

Absolute times depend on the machine; compare runs of one machine, or read the ratios between kernels
measured in the same run (the ``group`` column groups kernels by length).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from harness.core.heap import pin_heap
from harness.models.blocks import attend
from harness.models.kernels.lsh_attention import lsh_attention
from harness.models.lambda_net import LambdaLayer, PixelSelfAttention
from harness.models.shuffle_exchange import ShuffleExchange, ShuffleExchangeConfig

pin_heap()  # the heap policy every harness command measures under

HEADS, DH = 2, 32
LENGTHS = [1024, 4096, 16384]
SIDES = [16, 32, 64]


def _step(fn: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> Callable[[], None]:
    """One forward + backward of ``fn``; gradients are cleared so memory does not pile up."""

    def run() -> None:
        for p in params:
            p.grad = None
        fn().sum().backward()

    return run


def _qkv(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    return [torch.randn(1, HEADS, n, DH, generator=g, requires_grad=True) for _ in range(3)]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("kind", ["sdpa", "math"])
def test_full_attention(benchmark, n: int, kind: str) -> None:  # noqa: ANN001
    if kind == "math" and n > 4096:
        pytest.skip("materialised attention at 16K tokens needs several GB: the point of the comparison")
    q, k, v = _qkv(n)
    benchmark.group = f"tokens n={n}"
    benchmark.pedantic(_step(lambda: attend(q, k, v, causal=True, dropout=0.0, kind=kind), [q, k, v]),
                       rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("n", LENGTHS)
def test_lsh_attention(benchmark, n: int) -> None:  # noqa: ANN001
    qk, v, _ = _qkv(n)
    benchmark.group = f"tokens n={n}"
    benchmark.pedantic(_step(lambda: lsh_attention(qk, v, n_hashes=2, bucket_size=64, causal=True), [qk, v]),
                       rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("n", LENGTHS)
def test_shuffle_exchange_block(benchmark, n: int) -> None:  # noqa: ANN001
    """One Benes block, the final switch layer and the head, as training runs them: the hand-written
    backward with the block recomputed (``checkpoint: block``)."""
    torch.manual_seed(0)
    model = ShuffleExchange(ShuffleExchangeConfig(vocab_size=8, d_model=HEADS * DH, d_ff=128, n_blocks=1,
                                                  checkpoint="block"))
    h = torch.randn(1, n, HEADS * DH, requires_grad=True)
    params = [h, *model.parameters()]
    assert n == 2 ** int(math.log2(n))
    benchmark.group = f"tokens n={n}"
    benchmark.pedantic(_step(lambda: model._stack_forward(h, n), params), rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("layer", ["lambda", "attention-sdpa", "attention-math"])
def test_image_mixer(benchmark, side: int, layer: str) -> None:  # noqa: ANN001
    if layer == "attention-math" and side > 32:
        pytest.skip("materialised attention over 4096 pixels keeps ~0.5 GB; measured by the vision suite")
    torch.manual_seed(0)
    if layer == "lambda":
        mod: torch.nn.Module = LambdaLayer(64, dim_k=16, dim_u=1, heads=4, context="local", r=23, size=side)
    else:
        mod = PixelSelfAttention(64, 4, layer.split("-")[1])
    x = torch.randn(2, 64, side, side, requires_grad=True)
    benchmark.group = f"image {side}x{side}"
    benchmark.pedantic(_step(lambda: mod(x), [x, *mod.parameters()]), rounds=3, warmup_rounds=1)


def test_kernels_agree_on_small_input() -> None:
    """A sanity check that the benchmarked calls compute what their names say (not a timing)."""
    q, k, v = _qkv(64)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = attend(q, k, v, causal=True, dropout=0.0, kind="math")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out = lsh_attention(q, v, n_hashes=2, bucket_size=64, causal=True)
    assert out.shape == v.shape and torch.isfinite(out).all()
