"""ViT (Dosovitskiy et al. 2021): shapes, refusals, class-token readout, position interpolation."""

from __future__ import annotations

import pytest
import torch

import harness
from harness.core.errors import HarnessError

SMALL = dict(d_model=16, n_heads=2, d_ff=32, n_layers=2, dropout=0.0)


def test_forward_shape_and_parameter_count() -> None:
    m = harness.build_model("vit", image_size=8, patch_size=4, in_channels=1, n_classes=10, **SMALL)
    assert m(images=torch.randn(3, 1, 8, 8)).logits.shape == (3, 10)
    d, ff, layers, n = 16, 32, 2, 4  # (8/4)^2 = 4 patches
    block = 4 * (d * d + d) + (d * ff + ff + ff * d + d) + 2 * 2 * d
    expected = (1 * 4 * 4 * d + d) + d + (1 + n) * d + layers * block + 2 * d + (d * 10 + 10)
    assert sum(p.numel() for p in m.parameters()) == expected


@pytest.mark.parametrize("size,patch", [(16, 5), (8, 3), (10, 4)])
def test_refuses_patch_size_not_dividing_image_size(size: int, patch: int) -> None:
    with pytest.raises(HarnessError, match=f"patch_size: must divide image_size \\({size}\\)"):
        harness.build_model("vit", image_size=size, patch_size=patch)


def test_refuses_heads_not_dividing_d_model() -> None:
    with pytest.raises(HarnessError, match="n_heads: must divide d_model"):
        harness.build_model("vit", d_model=30, n_heads=4)


def test_prediction_reads_the_class_token_only_through_attention() -> None:
    """Patches influence the logits (through attention into the class token); the batch does not mix."""
    m = harness.build_model("vit", image_size=8, **SMALL).eval()
    x = torch.randn(2, 1, 8, 8)
    y = x.clone()
    y[1, :, :4, :4] += 1.0  # change one patch of the second image
    a, b = m(images=x).logits, m(images=y).logits
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_sdpa_and_math_agree() -> None:
    torch.manual_seed(0)
    a = harness.build_model("vit", image_size=8, attention="sdpa", **SMALL).eval()
    b = harness.build_model("vit", image_size=8, attention="math", **SMALL).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(a(images=x).logits, b(images=x).logits, atol=1e-5, rtol=1e-5)


def test_other_resolution_interpolates_positions() -> None:
    m = harness.build_model("vit", image_size=16, patch_size=4, **SMALL).eval()
    assert m(images=torch.randn(1, 1, 8, 8)).logits.shape == (1, 10)
    torch.testing.assert_close(m.positions(4), m.pos)
    assert m.positions(2).shape == (1, 5, 16)
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        m(images=torch.randn(1, 1, 10, 10))
