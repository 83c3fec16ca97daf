"""Training speed of harness's vanilla Transformer against torch.nn.TransformerEncoder, side by side.

Both stacks get the same token embedding and tied output head, the same config (d_model 256, 4 heads,
d_ff 1024, 4 post-LN layers, ReLU, dropout 0.1, bidirectional), batch 8 x 256 tokens, AdamW. Rounds
alternate the two models so that machine noise hits both alike; the verdict is the ratio of median
step times measured in this one run (>= 1.0 means harness's vanilla is at least as fast), never an
absolute time. MFU = 3 x forward FLOPs per step / step time / the matmul peak measured in-process.

    python benchmarks/bench_vanilla.py [--rounds 8] [--steps 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from torch import nn

import harness
from harness.core.heap import pin_heap
from harness.measure.flops import count_flops
from harness.measure.timing import alternate_step_ms, matmul_peak_flops
from harness.models.base import ModelOutput
from harness.models.blocks import TiedHead, TokenEmbedding
from harness.tasks.base import Batch

D, H, FF, LAYERS, BATCH, LEN, VOCAB, DROP = 256, 4, 1024, 4, 8, 256, 1000, 0.1


class TorchEncoder(nn.Module):
    """torch.nn.TransformerEncoder between the same embedding and head as harness's model."""

    io = "masked"

    def __init__(self) -> None:
        super().__init__()
        self.embed = TokenEmbedding(VOCAB, D, LEN, "sinusoidal", DROP)
        layer = nn.TransformerEncoderLayer(D, H, FF, DROP, activation="relu", batch_first=True,
                                           norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = TiedHead(self.embed.tok)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.head(self.encoder(self.embed(x))))


def step_fn(model: nn.Module, batch: Batch):  # noqa: ANN201
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        logits = model(**batch.inputs).logits
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch.labels.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="steps per model per round")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pin_heap()  # the heap policy every harness command measures under

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    batch = Batch.of_tokens(
        {"x": torch.randint(0, VOCAB, (BATCH, LEN), generator=gen)},
        torch.randint(0, VOCAB, (BATCH, LEN), generator=gen),
    )
    models = {
        "harness.vanilla": harness.build_model(
            "vanilla", arch="encoder", vocab_size=VOCAB, d_model=D, n_heads=H, d_ff=FF, n_layers=LAYERS,
            dropout=DROP, max_len=LEN, norm="post",
        ),
        "torch.nn.TransformerEncoder": TorchEncoder(),
    }
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    flops = {k: count_flops(m, batch)[0] for k, m in models.items()}
    steps = {k: step_fn(m.train(), batch) for k, m in models.items()}
    for s in steps.values():  # warm-up: allocator, kernels, optimizer state
        s(), s()
    times = alternate_step_ms(steps, rounds=args.rounds, per_round=args.steps)
    peak = matmul_peak_flops(torch.device("cpu"))
    shape = dict(d_model=D, n_heads=H, d_ff=FF, n_layers=LAYERS, batch=BATCH, seq_len=LEN, vocab=VOCAB)
    out = {"config": shape,
           "threads": torch.get_num_threads(), "matmul_peak_gflops": peak / 1e9, "models": {}}
    for k in models:
        med = statistics.median(times[k]) / 1e3
        out["models"][k] = {
            "params": params[k], "flops_fwd_per_step": flops[k], "median_step_ms": med * 1e3,
            "mfu": 3 * flops[k] / med / peak,
        }
    a, b = (out["models"][k]["median_step_ms"] for k in models)
    out["speed_ratio_torch_over_harness"] = b / a
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s, {torch.get_num_threads()} threads, "
          f"{args.rounds} alternating rounds x {args.steps} steps")
    for k, v in out["models"].items():
        print(f"{k:<30} params {v['params']:,}  step {v['median_step_ms']:.1f} ms  MFU {v['mfu']:.3f}")
    ratio = out["speed_ratio_torch_over_harness"]
    verdict = "harness at least as fast" if ratio >= 1 else "harness slower"
    print(f"speed ratio (torch step / harness step): {ratio:.3f} ({verdict})")


if __name__ == "__main__":
    main()
