"""Lambda layer (Bello 2021) and LambdaResNet: shapes, normalisation, equivariance, lambda conv = global E."""

from __future__ import annotations

import pytest
import torch

import harness
from harness.core.errors import HarnessError
from harness.models.lambda_net import LambdaLayer


@pytest.mark.parametrize("context,position", [("global", True), ("local", True), ("global", False)])
def test_layer_shapes(context: str, position: bool) -> None:
    layer = LambdaLayer(16, dim_k=4, dim_u=2, heads=4, context=context, r=3, position=position, size=5)
    y = layer(torch.randn(2, 16, 5, 5))
    assert y.shape == (2, 16, 5, 5)
    assert torch.isfinite(y).all()


def test_smaller_map_than_configured() -> None:
    """The global table covers any map up to its size (central offsets); a larger one is refused."""
    layer = LambdaLayer(8, dim_k=4, heads=2, context="global", size=6)
    assert layer(torch.randn(1, 8, 4, 4)).shape == (1, 8, 4, 4)
    with pytest.raises(ValueError, match="exceeds"):
        layer(torch.randn(1, 8, 7, 7))


def test_local_kernel_is_clamped_to_the_map() -> None:
    layer = LambdaLayer(8, dim_k=4, heads=2, context="local", r=23, size=4)
    assert layer.r == 7 and layer.pos_conv is not None and layer.pos_conv.weight.shape[-1] == 7


def test_content_keys_are_normalised_over_context() -> None:
    """softmax(K) sums to one over positions: with constant values, lambda^c's output is the value times q."""
    layer = LambdaLayer(8, dim_k=4, dim_u=1, heads=2, position=False, size=4).eval()
    x = torch.randn(2, 8, 4, 4)
    b, n = 2, 16
    keys = layer.to_k(x).view(b, 1, 4, n).softmax(dim=-1)
    torch.testing.assert_close(keys.sum(-1), torch.ones(b, 1, 4))
    # the layer itself: when every position has the same value vector, the content lambda is
    # (sum_m softmax(K)_m) v^T = 1 v^T whatever the keys, so y_n = (q_n . 1) v
    with torch.no_grad():
        layer.to_v[0].weight.zero_()
        layer.to_v[1].bias.copy_(torch.arange(4.0))  # value (0, 1, 2, 3) at every position
        y = layer(x).view(b, 2, 4, n)  # (B, h, v, n)
        q = layer.to_q(x).view(b, 2, 4, n)  # (B, h, k, n)
    expected = q.sum(2, keepdim=True) * torch.arange(4.0)[None, None, :, None]
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


def test_content_only_layer_is_permutation_equivariant() -> None:
    torch.manual_seed(0)
    layer = LambdaLayer(8, dim_k=4, dim_u=2, heads=2, position=False, size=4).eval()
    x = torch.randn(2, 8, 4, 4)
    perm = torch.randperm(16)
    xp = x.flatten(2)[:, :, perm].view(2, 8, 4, 4)
    y, yp = layer(x).flatten(2), layer(xp).flatten(2)
    torch.testing.assert_close(yp, y[:, :, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(yp.mean(-1), y.mean(-1), atol=1e-5, rtol=1e-5)  # pooled: invariant
    # with position lambdas it is not
    pos = LambdaLayer(8, dim_k=4, heads=2, context="global", size=4).eval()
    assert not torch.allclose(pos(xp).flatten(2), pos(x).flatten(2)[:, :, perm], atol=1e-4)


def shared_weights(layer: LambdaLayer) -> dict[str, torch.Tensor]:
    """The q/k/v projections of a layer, without its position parameters."""
    return {k: v for k, v in layer.state_dict().items() if not k.startswith("pos_conv")}


def explicit_embeddings(kernel: torch.Tensor, side: int) -> torch.Tensor:
    """E (n, m, k, u) of the lambda convolution's r x r kernel (k, u, r, r), written out position by position.

    Conv2d is a cross-correlation: out[y, x] = sum_{i, j} w[i, j] in[y + i - r//2, x + j - r//2], so the
    context position m = (y', x') gets the kernel tap (y' - y + r//2, x' - x + r//2) if it is in the window.
    """
    k, u, r, _ = kernel.shape
    n = side * side
    e = torch.zeros(n, n, k, u)
    for qy in range(side):
        for qx in range(side):
            for my in range(side):
                for mx in range(side):
                    i, j = my - qy + r // 2, mx - qx + r // 2
                    if 0 <= i < r and 0 <= j < r:
                        e[qy * side + qx, my * side + mx] = kernel[:, :, i, j]
    return e


@pytest.mark.parametrize("dim_u", [1, 2])
def test_lambda_conv_equals_global_formulation_in_window(dim_u: int) -> None:
    """Local (r=3 conv) == y_n = (softmax(K)^T V + E_n^T V)^T q_n with E zero outside the 3x3 window."""
    torch.manual_seed(1)
    side, k, h, d = 5, 4, 2, 8
    local = LambdaLayer(d, dim_k=k, dim_u=dim_u, heads=h, context="local", r=3, size=side).eval()
    x = torch.randn(2, d, side, side)
    assert local.pos_conv is not None
    e = explicit_embeddings(local.pos_conv.weight.detach(), side)
    b, n, v = 2, side * side, d // h
    with torch.no_grad():
        q = local.to_q(x).view(b, h, k, n)
        keys = local.to_k(x).view(b, dim_u, k, n).softmax(-1)
        vals = local.to_v(x).view(b, dim_u, v, n)
        lam = torch.einsum("bukm,buvm->bkv", keys, vals)[:, None] + torch.einsum("nmku,buvm->bnkv", e, vals)
        expected = torch.einsum("bhkn,bnkv->bhvn", q, lam).reshape(b, d, side, side)
        torch.testing.assert_close(local(x), expected, atol=1e-5, rtol=1e-5)

        # and the layer's own global path, with its table set from the same kernel, agrees too
        glob = LambdaLayer(d, dim_k=k, dim_u=dim_u, heads=h, context="global", size=side).eval()
        glob.load_state_dict(shared_weights(local), strict=False)
        assert glob.rel is not None
        glob.rel.zero_()
        c = side - 1  # table index of offset 0
        glob.rel[c - 1 : c + 2, c - 1 : c + 2] = local.pos_conv.weight.permute(2, 3, 0, 1)  # (r, r, k, u)
        torch.testing.assert_close(glob(x), local(x), atol=1e-5, rtol=1e-5)


def test_full_width_conv_equals_global_layer() -> None:
    """With r = 2S-1 the lambda convolution sees every offset: it computes the global layer exactly."""
    side = 4
    local = LambdaLayer(8, dim_k=4, heads=2, context="local", r=2 * side - 1, size=side).eval()
    glob = LambdaLayer(8, dim_k=4, heads=2, context="global", size=side).eval()
    glob.load_state_dict(shared_weights(local), strict=False)
    assert local.pos_conv is not None and glob.rel is not None
    with torch.no_grad():
        glob.rel.copy_(local.pos_conv.weight.permute(2, 3, 0, 1))
    x = torch.randn(2, 8, side, side)
    torch.testing.assert_close(glob(x), local(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "keys",
    [
        dict(),
        dict(context="global"),
        dict(position=False),
        dict(layer="attention"),
        dict(layer="attention", attention="math"),
        dict(lambda_stages=[0, 1, 2], blocks=[2, 1, 2]),
        dict(arch="layer", width=16, image_size=8),
        dict(arch="layer", layer="attention", width=16, image_size=8),
    ],
)
def test_model_forward_shapes(keys: dict) -> None:
    size = keys.pop("image_size", 16)
    m = harness.build_model("lambda", image_size=size, **keys)
    out = m(images=torch.randn(3, 1, size, size))
    assert out.logits.shape == (3, 10)
    assert torch.isfinite(out.logits).all()


def test_lambda_replaces_only_the_chosen_stages() -> None:
    from harness.models.lambda_net import PixelSelfAttention

    m = harness.build_model("lambda", widths=[8, 8, 8], blocks=[1, 2, 1], heads=2, lambda_stages=[1])
    kinds = [type(b.mixer).__name__ for b in m.body.blocks]
    # stage 1's first block downsamples: the layer is followed by a stride-2 average pool
    assert kinds == ["Conv2d", "Sequential", "LambdaLayer", "Conv2d"]
    assert isinstance(m.body.blocks[1].mixer[0], LambdaLayer)
    a = harness.build_model("lambda", layer="attention")
    assert isinstance(a.body.blocks[-1].mixer[0], PixelSelfAttention)


@pytest.mark.parametrize(
    "keys,match",
    [
        (dict(dim_k=0), "dim_k: must be >= 1"),
        (dict(heads=3), "heads: must divide the width of stage 2"),
        (dict(arch="layer", width=30, heads=4), "heads: must divide width"),
        (dict(r=4), "r: must be odd"),
        (dict(r=0), "r: must be odd"),
        (dict(widths=[8, 8], blocks=[1, 1, 1]), "blocks: must have one entry per stage"),
        (dict(lambda_stages=[3]), "lambda_stages: stage 3 does not exist"),
    ],
)
def test_refusals_name_the_key(keys: dict, match: str) -> None:
    with pytest.raises(HarnessError, match=match):
        harness.build_model("lambda", **keys)


def test_resnet_forward_and_refusals() -> None:
    m = harness.build_model("resnet", widths=[4, 8], blocks=[1, 2], stem=8, image_size=12)
    assert m(images=torch.randn(2, 1, 12, 12)).logits.shape == (2, 10)
    assert m.body(torch.randn(2, 1, 12, 12)).shape == (2, 32, 6, 6)
    with pytest.raises(HarnessError, match="blocks: must have one entry per stage"):
        harness.build_model("resnet", widths=[8, 8], blocks=[1])
