"""Forward FLOPs of one batch, counted on a TorchScript trace by fvcore with our own formula table.

Unit: FLOPs, with one multiply-add = 2 FLOPs. The handles below return multiply-accumulates (MACs),
as fvcore's handles do, and :func:`count_flops` doubles the total once.

Convention: only matrix-multiply-like ops cost anything: ``linear``, ``addmm``, ``mm``, ``matmul``,
``bmm``, ``baddbmm``, ``einsum`` (its pairwise contractions), ``mv``/``dot``, convolutions and
``aten::scaled_dot_product_attention``. This is the convention of ``torch.utils.flop_counter`` and of
the 6N-FLOPs-per-token rule (Kaplan et al. 2020, Sec. 2.1): elementwise ops, softmax, norms, embedding
lookups, dropout, pooling, reshapes and indexing are counted as zero. They get explicit zero-cost
handles (``ZERO_COST_OPS``) so that the ``unsupported`` list names only ops that are genuinely unknown.
fvcore's own defaults charge ``layer_norm``, ``batch_norm``, ``group_norm``, upsampling and adaptive
pooling a few FLOPs per element; we override them to zero to agree with torch's counter. One knowing
difference: torch's counter has no formula for ``mv``/``dot`` (it sees them only when they lower to
``mm``); we charge them as the matrix products they are.

Biases are not counted (``addmm`` and ``linear`` cost M*N*K MACs), as in both fvcore and torch's counter.
Attention through ``scaled_dot_product_attention`` costs the full L x S score matrix even with
``is_causal=True`` (torch's counter does not discount causal masking either), so a fused causal call
and the explicit ``softmax(q k^T) v`` path are charged the same.

Custom ``torch.autograd.Function``s (reversible layers, re-entrant checkpointing) appear in a trace as
one ``prim::PythonOp`` node; fvcore would report them as unsupported and count nothing inside. We
count them by walking the subgraph the tracer records for each such node, with the same table.

Extend the table with :func:`register_flop_handle` (``HANDLES`` is process-wide; it already holds a
``zero_macs`` entry for every name in ``ZERO_COST_OPS``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from harness.tasks.base import Batch

with warnings.catch_warnings():
    # fvcore.nn's package init scripts its loss functions with torch.jit.script, deprecated in torch 2.13.
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis

# (inputs, outputs) of one traced node, as lists of torch._C.Value -> multiply-accumulates.
Handle = Callable[[list[Any], list[Any]], int]

_PYTHON_OP = "prim::PythonOp"


def _shape(value: Any) -> list[int]:
    """Static shape of a traced tensor value (tracing records complete shapes)."""
    sizes = value.type().sizes() if value.isCompleteTensor() else None
    if sizes is None:
        raise ValueError(f"no static shape for traced value {value.debugName()}")
    return [int(s) for s in sizes]


def _prod(xs: Sequence[int]) -> int:
    return math.prod(int(x) for x in xs)


# --- matrix-multiply-like handles (return MACs) ------------------------------------------------------


def linear_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::linear(x [..., K], w [N, K], b)``: prod(x) * N."""
    x, w = _shape(inputs[0]), _shape(inputs[1])
    return _prod(x) * (w[0] if len(w) == 2 else 1)


def addmm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::addmm(bias, a [M, K], b [K, N])``: M*K*N; the bias add is free."""
    (m, k), n = _shape(inputs[1]), _shape(inputs[2])[1]
    return m * k * n


def mm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::mm(a [M, K], b [K, N])``: M*K*N."""
    (m, k), n = _shape(inputs[0]), _shape(inputs[1])[1]
    return m * k * n


def bmm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::bmm(a [B, M, K], b [B, K, N])``: B*M*K*N."""
    (b, m, k), n = _shape(inputs[0]), _shape(inputs[1])[2]
    return b * m * k * n


def baddbmm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::baddbmm(input, a [B, M, K], b [B, K, N], ...)``: B*M*K*N."""
    return bmm_macs(inputs[1:3], outputs)


def matmul_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::matmul`` with numpy broadcasting of the batch axes and the 1-D cases."""
    a, b = _shape(inputs[0]), _shape(inputs[1])
    if len(a) == 1 and len(b) == 1:
        return a[0]
    if len(b) == 1:  # [..., M, K] @ [K]
        return _prod(a)
    if len(a) == 1:  # [K] @ [..., K, N]
        return _prod(b)
    # fvcore's own handle uses prod(a) * N, which undercounts when b carries the extra batch axes.
    batch = torch.broadcast_shapes(torch.Size(a[:-2]), torch.Size(b[:-2]))
    return _prod(batch) * a[-2] * a[-1] * b[-1]


def mv_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::mv(a [M, K], v [K])``: M*K."""
    return _prod(_shape(inputs[0]))


def addmv_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::addmv(bias, a [M, K], v [K], ...)``: M*K."""
    return _prod(_shape(inputs[1]))


def dot_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::dot(u [K], v [K])``: K."""
    return _shape(inputs[0])[0]


def conv_handle(transposed_arg: int | None, transposed: bool = False) -> Handle:
    """Convolution handle; ``transposed_arg`` is the index of the op's ``transposed`` flag, if it has one.

    MACs = batch * prod(weight shape) * prod(spatial size), where the spatial size is the output's for
    an ordinary convolution and the input's for a transposed one (each input pixel scatters a full
    kernel). The weight shape already divides by ``groups``. Same formula as fvcore and torch.
    """

    def conv_macs(inputs: list[Any], outputs: list[Any]) -> int:
        x, w, out = _shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0])
        is_transposed = bool(inputs[transposed_arg].toIValue()) if transposed_arg is not None else transposed
        batched = len(x) == len(w)  # unbatched inputs lack the leading batch axis
        batch = x[0] if batched else 1
        spatial = (x if is_transposed else out)[2 if batched else 1 :]
        return batch * _prod(w) * _prod(spatial)

    return conv_macs


def sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::scaled_dot_product_attention(q [..., L, E], k [..., S, E], v [..., S, Ev], ...)``.

    q k^T costs L*S*E and (attention weights) v costs L*S*Ev per batch-and-head, so MACs =
    prod(q batch axes) * L * S * (E + Ev). Causal masking is not discounted, as in torch's counter.
    """
    q, k, v = _shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2])
    big_l, e = q[-2], q[-1]
    return _prod(q[:-2]) * big_l * k[-2] * (e + v[-1])


def einsum_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::einsum(equation, operands)`` contracted pairwise from left to right, as ATen does.

    Each pairwise step that sums over a shared index is a batched matmul costing the product of the
    sizes of every index of the two operands; a step without a shared summed index is a broadcast
    multiply (free, like any elementwise op), and an index that occurs in one operand only is summed
    away beforehand (a free reduction). This matches torch's counter, which sees the ``bmm`` calls.
    With ``opt_einsum`` installed, torch may reorder contractions of three or more operands.
    """
    terms, out = _parse_einsum(inputs[0].toIValue(), [_shape(v) for v in inputs[1].node().inputs()])
    sizes: dict[str, int] = {}
    for term, shape in terms:
        for index, size in zip(term, shape):
            sizes[index] = max(sizes.get(index, 1), size)  # size-1 axes broadcast
    operands = [set(term) for term, _ in terms]
    total = 0
    current = operands[0]
    for i in range(1, len(operands)):
        later = set(out).union(*operands[i + 1 :])
        left, right = current, operands[i]
        # An index present on one side only and not needed later is summed away first, for free.
        left = {x for x in left if x in right or x in later}
        right = {x for x in right if x in left or x in later}
        contracted = (left & right) - later
        if contracted:
            total += _prod([sizes[x] for x in left | right])
        current = (left | right) - contracted
    return total


def _parse_einsum(equation: str, shapes: list[list[int]]) -> tuple[list[tuple[str, list[int]]], str]:
    """Operand index strings (with ``...`` expanded to fresh symbols) and the output index string."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    raw = lhs.split(",")
    n_ellipsis = max((len(s) - (len(t) - 3) for t, s in zip(raw, shapes) if "..." in t), default=0)
    fresh = "".join(chr(0x3B1 + i) for i in range(n_ellipsis))  # Greek letters never occur in equations
    terms = []
    for term, shape in zip(raw, shapes):
        if "..." in term:
            k = len(shape) - (len(term) - 3)
            term = term.replace("...", fresh[n_ellipsis - k :])
        terms.append((term, shape))
    if arrow:
        out = rhs.replace("...", fresh)
    else:  # implicit output: broadcast axes, then the letters that occur exactly once, sorted
        counts = Counter("".join(raw).replace(".", ""))
        out = fresh + "".join(sorted(c for c, n in counts.items() if n == 1))
    return terms, out


def zero_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """Ops that the convention counts as free."""
    return 0


# --- the table ---------------------------------------------------------------------------------------

ZERO_COST_OPS: tuple[str, ...] = (
    # elementwise arithmetic and activations
    "aten::abs", "aten::add", "aten::add_", "aten::addcdiv", "aten::addcmul", "aten::clamp", "aten::clamp_",
    "aten::clamp_max", "aten::clamp_min", "aten::clip", "aten::cos", "aten::cosh", "aten::div",
    "aten::div_", "aten::elu", "aten::elu_", "aten::erf", "aten::exp", "aten::exp_", "aten::expm1",
    "aten::floor", "aten::floor_divide", "aten::fmod", "aten::frac", "aten::gelu", "aten::glu",
    "aten::hardsigmoid", "aten::hardswish", "aten::hardtanh", "aten::hardtanh_", "aten::leaky_relu",
    "aten::leaky_relu_", "aten::lerp", "aten::log", "aten::log1p", "aten::log2", "aten::log_sigmoid",
    "aten::maximum", "aten::minimum", "aten::mish", "aten::mul", "aten::mul_", "aten::nan_to_num",
    "aten::neg", "aten::outer", "aten::pow", "aten::reciprocal", "aten::relu", "aten::relu6", "aten::relu_",
    "aten::remainder", "aten::round", "aten::rsqrt", "aten::rsub", "aten::selu", "aten::sigmoid",
    "aten::sigmoid_", "aten::sign", "aten::silu", "aten::silu_", "aten::sin", "aten::sinh",
    "aten::softplus", "aten::sqrt", "aten::square", "aten::sub", "aten::sub_", "aten::tanh", "aten::tanh_",
    "aten::trunc", "aten::where", "aten::xlogy",
    # comparisons and logic
    "aten::__and__", "aten::__or__", "aten::bitwise_and", "aten::bitwise_not", "aten::bitwise_or",
    "aten::eq", "aten::ge", "aten::gt", "aten::isinf", "aten::isnan", "aten::le", "aten::logical_and",
    "aten::logical_not", "aten::logical_or", "aten::lt", "aten::ne",
    # reductions, softmax and sorting
    "aten::all", "aten::amax", "aten::amin", "aten::any", "aten::argmax", "aten::argmin", "aten::argsort",
    "aten::cummax", "aten::cumprod", "aten::cumsum", "aten::linalg_vector_norm", "aten::log_softmax",
    "aten::logsumexp", "aten::max", "aten::mean", "aten::min", "aten::norm", "aten::prod", "aten::softmax",
    "aten::sort", "aten::std", "aten::sum", "aten::topk", "aten::var",
    # normalisation (fvcore charges these by default; torch's counter does not)
    "aten::batch_norm", "aten::group_norm", "aten::instance_norm", "aten::layer_norm",
    "aten::native_layer_norm", "aten::rms_norm",
    # embeddings, dropout, random numbers
    "aten::alpha_dropout", "aten::bernoulli", "aten::bernoulli_", "aten::dropout", "aten::dropout_",
    "aten::embedding", "aten::embedding_bag", "aten::feature_dropout", "aten::normal", "aten::normal_",
    "aten::rand", "aten::rand_like", "aten::randint", "aten::randint_like", "aten::randn",
    "aten::randn_like", "aten::randperm", "aten::uniform_",
    # pooling, resampling and image rearrangement
    "aten::adaptive_avg_pool1d", "aten::adaptive_avg_pool2d", "aten::adaptive_avg_pool3d",
    "aten::adaptive_max_pool1d", "aten::adaptive_max_pool2d", "aten::avg_pool1d", "aten::avg_pool2d",
    "aten::avg_pool3d", "aten::channel_shuffle", "aten::col2im", "aten::grid_sampler", "aten::im2col",
    "aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d", "aten::pixel_shuffle",
    "aten::pixel_unshuffle", "aten::upsample_bicubic2d", "aten::_upsample_bicubic2d_aa",
    "aten::upsample_bilinear2d",
    "aten::upsample_linear1d", "aten::upsample_nearest1d", "aten::upsample_nearest2d",
    "aten::upsample_nearest3d",
    # creation, copies and dtype/device moves
    "aten::arange", "aten::clone", "aten::contiguous", "aten::copy_", "aten::detach", "aten::empty",
    "aten::empty_like", "aten::fill_", "aten::full", "aten::full_like", "aten::linspace", "aten::new_empty",
    "aten::new_full", "aten::new_ones", "aten::new_zeros", "aten::one_hot", "aten::ones", "aten::ones_like",
    "aten::scalar_tensor", "aten::to", "aten::type_as", "aten::zero_", "aten::zeros", "aten::zeros_like",
    # views, reshapes and concatenation
    "aten::adjoint", "aten::as_strided", "aten::broadcast_tensors", "aten::cat", "aten::chunk",
    "aten::constant_pad_nd", "aten::diag_embed", "aten::diagonal", "aten::expand", "aten::expand_as",
    "aten::flatten", "aten::flip", "aten::meshgrid", "aten::movedim", "aten::mT", "aten::narrow",
    "aten::numpy_T", "aten::pad", "aten::permute", "aten::repeat", "aten::repeat_interleave",
    "aten::reshape", "aten::reshape_as", "aten::roll", "aten::select", "aten::slice", "aten::split",
    "aten::split_with_sizes", "aten::squeeze", "aten::stack", "aten::swapaxes", "aten::swapdims", "aten::t",
    "aten::tensor_split", "aten::tile", "aten::transpose", "aten::tril", "aten::triu", "aten::unbind",
    "aten::unflatten", "aten::unfold", "aten::unsqueeze", "aten::unsqueeze_", "aten::view", "aten::view_as",
    # indexing, gathering and masking
    "aten::gather", "aten::index", "aten::index_add", "aten::index_copy", "aten::index_fill",
    "aten::index_put", "aten::index_put_", "aten::index_select", "aten::masked_fill", "aten::masked_fill_",
    "aten::masked_scatter", "aten::masked_select", "aten::nonzero", "aten::scatter", "aten::scatter_",
    "aten::scatter_add", "aten::scatter_add_", "aten::scatter_reduce", "aten::take_along_dim",
    # scalar bookkeeping that tracing records around Python ints and shapes
    "aten::Float", "aten::imag", "aten::Int", "aten::item", "aten::numel", "aten::real",
    "aten::ScalarImplicit", "aten::size",
)  # fmt: skip

HANDLES: dict[str, Handle] = {
    "aten::linear": linear_macs,
    "aten::addmm": addmm_macs,
    "aten::mm": mm_macs,
    "aten::matmul": matmul_macs,
    "aten::bmm": bmm_macs,
    "aten::baddbmm": baddbmm_macs,
    "aten::addbmm": baddbmm_macs,
    "aten::einsum": einsum_macs,
    "aten::mv": mv_macs,
    "aten::addmv": addmv_macs,
    "aten::dot": dot_macs,
    "aten::vdot": dot_macs,
    "aten::_convolution": conv_handle(transposed_arg=6),
    "aten::convolution": conv_handle(transposed_arg=6),
    "aten::conv1d": conv_handle(None),
    "aten::conv2d": conv_handle(None),
    "aten::conv3d": conv_handle(None),
    "aten::conv_transpose1d": conv_handle(None, transposed=True),
    "aten::conv_transpose2d": conv_handle(None, transposed=True),
    "aten::conv_transpose3d": conv_handle(None, transposed=True),
    "aten::scaled_dot_product_attention": sdpa_macs,
    **{op: zero_macs for op in ZERO_COST_OPS},
}


def register_flop_handle(op_name: str, fn: Handle) -> None:
    """Add or replace the handle of one traced op, e.g. ``"aten::fft_rfft"`` or ``"prim::PythonOp.MyFn"``.

    ``fn(inputs, outputs)`` receives the node's inputs and outputs as ``torch._C.Value`` lists (shapes via
    ``value.type().sizes()``) and returns **multiply-accumulates**; :func:`count_flops` doubles them.
    Use :func:`zero_macs` to declare an op free. A handle for a ``prim::PythonOp.<Name>`` replaces the
    default walk over that custom Function's traced subgraph.
    """
    HANDLES[op_name] = fn


# --- counting ----------------------------------------------------------------------------------------


def _node_kind(node: Any) -> str:
    kind = node.kind()
    return f"{kind}.{node.pyname()}" if kind == _PYTHON_OP else kind


def _is_bookkeeping(kind: str) -> bool:
    """prim:: nodes are constants, lists and tuples, except Python and scripted calls that do real work."""
    return kind.startswith("prim::") and not kind.startswith((_PYTHON_OP, "prim::CallFunction"))


def _subgraph_macs(graph: Any, unsupported: Counter[str]) -> int:
    """MACs of every node of a traced (sub)graph, recording unknown ops in ``unsupported``."""
    total = 0
    for node in graph.nodes():
        kind = _node_kind(node)
        if kind in HANDLES:
            total += int(HANDLES[kind](list(node.inputs()), list(node.outputs())))
        elif kind.startswith(_PYTHON_OP) and "Subgraph" in node.attributeNames():
            total += _subgraph_macs(node.g("Subgraph"), unsupported)
        elif not _is_bookkeeping(kind):
            unsupported[kind] += 1
    return total


class _Table(dict[str, Handle]):
    """fvcore's op-handle table, extended to answer every ``prim::PythonOp.<Name>`` with a subgraph walk.

    fvcore looks handles up by exact name (``kind in table``, ``table[kind]``) and the names of custom
    Functions are only known after tracing, hence a mapping that resolves them on demand.
    """

    def __init__(self, handles: dict[str, Handle], python_op: Handle) -> None:
        super().__init__(handles)
        self._python_op = python_op

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and key.startswith(_PYTHON_OP + "."))

    def __missing__(self, key: str) -> Handle:
        if key.startswith(_PYTHON_OP + "."):
            return self._python_op
        raise KeyError(key)


class _LogitsOnly(nn.Module):
    """Tracing needs tensors in and out: positional inputs in a fixed key order, ``.logits`` out."""

    def __init__(self, model: nn.Module, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.keys, tensors)))
        return out if isinstance(out, torch.Tensor) else out.logits


def count_flops(model: nn.Module, batch: Batch) -> tuple[int, list[str]]:
    """Forward FLOPs of ``model`` on the whole ``batch`` (2 per multiply-add) and the ops without a handle.

    The model runs once in eval mode under ``torch.no_grad`` (its training flag is restored). PyTorch's
    fused inference fast path of ``nn.MultiheadAttention``/``nn.TransformerEncoderLayer`` is switched
    off meanwhile, so the trace shows their matmuls rather than one opaque native op.
    """
    keys = tuple(batch.inputs)
    inputs = tuple(batch.inputs[k] for k in keys)
    unsupported: Counter[str] = Counter()

    def python_op_macs(node_inputs: list[Any], node_outputs: list[Any]) -> int:
        node = node_outputs[0].node() if node_outputs else None
        if node is None or "Subgraph" not in node.attributeNames():
            unsupported[_node_kind(node) if node is not None else _PYTHON_OP] += 1
            return 0
        return _subgraph_macs(node.g("Subgraph"), unsupported)

    analysis = FlopCountAnalysis(_LogitsOnly(model, keys), inputs)
    analysis.clear_op_handles().set_op_handle(**HANDLES)
    # fvcore keeps the table in a private attribute; its lookups are plain ``in`` and ``[]``.
    analysis._op_handles = _Table(analysis._op_handles, python_op_macs)
    # Gaps are returned to the caller rather than logged; uncalled submodules are not a problem here.
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")

    was_training = model.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    fvcore_logger = logging.getLogger("fvcore")
    log_level = fvcore_logger.level
    try:
        model.eval()
        torch.backends.mha.set_fastpath_enabled(False)
        fvcore_logger.setLevel(logging.ERROR)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs = int(analysis.total())
            unsupported.update(analysis.unsupported_ops())
    finally:
        model.train(was_training)
        torch.backends.mha.set_fastpath_enabled(fastpath)
        fvcore_logger.setLevel(log_level)
    return 2 * macs, sorted(unsupported)
