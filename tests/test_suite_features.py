"""Suite features the long-range and vision suites rely on: per-variant tasks, cost sweeps that stop at
a limit, eval modes (train with one setting, evaluate with others) and sweeps over image sizes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tiny_suites import section_only, tiny_spec

from harness.results.store import ResultStore
from harness.run.orchestrate import run_suite
from harness.suite.load import load_suite

# the tiny suite on two tasks, reverse and copy, with a cost sweep over four lengths of reverse; variant
# b trains on copy only and is left out of the sweep
A = {"name": "a", "model": "vanilla"}
B = {"name": "b", "model": "vanilla", "norm": "pre", "tasks": ["cp"], "profile": False}
FEAT = dict(
    name="feat",
    baseline=None,
    train={"steps": 4, "lr": None, "warmup_steps": None, "eval_every": 4, "profile_steps": None,
           "profile_warmup": None},
    model={"dropout": 0.0},
    tasks=[{"name": "rev", "task": "reverse", "seq_len": 4, "vocab": 4},
           {"name": "cp", "task": "copy", "seq_len": 4, "vocab": 4}],
    variants=[A, B],
    profile={"seq_lens": [8, 16, 32, 64], "batch_size": 1, "task": "rev"},
)


def _feat(**changes: Any) -> dict[str, Any]:
    """The suite's data with ``changes``, as ``refused_suite`` takes it."""
    return tiny_spec(FEAT, **changes)


def test_variant_tasks_and_profile_flag_restrict_the_grid(tiny_suite: Callable[..., Path]) -> None:
    suite = load_suite(tiny_suite(FEAT))
    train = {(j.variant, j.task_name) for j in suite.jobs if j.kind == "train"}
    assert train == {("a", "rev"), ("a", "cp"), ("b", "cp")}
    profiled = {j.variant for j in suite.jobs if j.kind == "profile"}
    assert profiled == {"a"}


def test_variant_tasks_are_validated(refused_suite: Any) -> None:
    line = refused_suite(_feat(variants=[A, B | {"tasks": ["cpp"]}]))
    assert "variants[1].tasks[0]" in line and "cpp" in line and "Did you mean: cp" in line
    line = refused_suite(_feat(variants=[A, B | {"profile": "maybe"}]))
    assert "variants[1].profile" in line


def test_sweep_stops_after_the_time_budget(tmp_path: Path, tiny_suite: Callable[..., Path]) -> None:
    """A length whose step took longer than max_step_s stops the variant's sweep; the longer lengths
    are stored as 'skipped' with the reason, the suite goes on, and a rerun retries only those."""
    suite = load_suite(tiny_suite(FEAT, profile={"max_step_s": 0.5}))
    calls: list[int] = []

    def fake(job: Any, _progress: Any) -> dict[str, Any]:
        if job.kind == "profile":
            calls.append(job.seq_len)
        step_ms = {8: 10.0, 16: 900.0}.get(job.seq_len, 5.0)  # 16 tokens breaks the 0.5 s budget
        return {"run_id": job.run_id, "suite": job.suite, "variant": job.variant, "task": job.task_name,
                "job": job.kind, "seed": job.seed, "seq_len": job.seq_len, "status": "ok", "step_ms": step_ms}

    results = tmp_path / "results"
    summary = run_suite(suite, results, quiet=True, runner=fake)
    assert calls == [8, 16]
    assert summary.statuses == {"ok": 8, "skipped": 2}
    rows = [r for r in ResultStore(results / "feat.jsonl").rows() if r["job"] == "profile"]
    skipped = sorted((r for r in rows if r["status"] == "skipped"), key=lambda r: r["seq_len"])
    assert [r["seq_len"] for r in skipped] == [32, 64]
    assert "0.9 s at n=16, over the 0.5 s budget" in skipped[0]["error"]
    # resumed: finished cells are kept, the skipped ones are reconsidered and skipped again
    calls.clear()
    again = run_suite(suite, results, quiet=True, runner=fake)
    assert calls == [] and again.statuses == {"skipped": 2}


def test_sweep_stops_after_oom(tmp_path: Path, tiny_suite: Callable[..., Path]) -> None:
    suite = load_suite(tiny_suite(FEAT))

    def fake(job: Any, _progress: Any) -> dict[str, Any]:
        status = "oom" if job.kind == "profile" and job.seq_len >= 32 else "ok"
        return {"run_id": job.run_id, "suite": job.suite, "variant": job.variant, "job": job.kind,
                "seq_len": job.seq_len, "status": status, "step_ms": 1.0}

    summary = run_suite(suite, tmp_path / "r", quiet=True, runner=fake)
    assert summary.statuses == {"ok": 8, "oom": 1, "skipped": 1}


def test_eval_modes_evaluate_trained_weights_under_other_keys(tiny_suite: Callable[..., Path]) -> None:
    math_mode = {"eval_modes": {"math": {"attention": "math"}}}
    suite = load_suite(tiny_suite(FEAT, train=math_mode, profile=None))
    job = next(j for j in suite.jobs if j.variant == "a" and j.task_name == "rev")
    from harness.run.execute import execute

    row = execute(job)
    assert row["status"] == "ok", row["error"]
    # sdpa and math attention are the same function: the eval mode reproduces the headline numbers
    assert abs(row["metrics"]["seq_acc@math"] - row["metrics"]["seq_acc"]) < 1e-9
    assert abs(row["metrics"]["tok_acc@math"] - row["metrics"]["tok_acc"]) < 1e-9


def test_eval_modes_are_validated(refused_suite: Any) -> None:
    line = refused_suite(_feat(train={"eval_modes": {"m": {"attentoin": "math"}}}))
    assert "train.eval_modes.m.attentoin" in line and "did you mean 'attention'" in line
    line = refused_suite(_feat(train={"eval_modes": {"m": {"attention": "fast"}}}))
    assert "train.eval_modes.m.attention" in line and "must be one of" in line


def test_image_sizes_profile_alias(tiny_suite: Callable[..., Path]) -> None:
    suite = load_suite(tiny_suite(FEAT, profile={"seq_lens": None, "image_sizes": [8, 16]}))
    assert sorted(j.seq_len for j in suite.jobs if j.kind == "profile") == [8, 16]


def test_profile_only_variant(tiny_suite: Callable[..., Path], refused_suite: Any) -> None:
    profile_only = {"name": "b", "model": "vanilla", "norm": "pre", "tasks": []}
    suite = load_suite(tiny_suite(FEAT, variants=[A, profile_only]))
    assert {j.kind for j in suite.jobs if j.variant == "b"} == {"profile"}
    line = refused_suite(_feat(variants=[A, B | {"tasks": []}]))  # and not profiled either
    assert "variants[1].tasks" in line and "would run nothing" in line


def test_baseline_per_task(tiny_suite: Callable[..., Path], refused_suite: Any) -> None:
    suite = load_suite(tiny_suite(FEAT, baseline={"rev": "a", "cp": "b"}))
    assert {(j.task_name, j.baseline) for j in suite.jobs if j.kind == "train"} == {("rev", "a"), ("cp", "b")}
    line = refused_suite(_feat(baseline={"rev": "a", "cp": "c"}))
    assert "baseline.cp" in line and "unknown baseline variant 'c'" in line
    line = refused_suite(_feat(baseline={"rve": "a", "cp": "b"}))
    assert "baseline.rve" in line


def test_variant_train_overrides(tiny_suite: Callable[..., Path], refused_suite: Any) -> None:
    suite = load_suite(tiny_suite(FEAT, variants=[A, B | {"train": {"steps": 8}}]))
    steps = {(j.variant, j.train["steps"]) for j in suite.jobs if j.kind == "train"}
    assert steps == {("a", 4), ("b", 8)}
    # the other variants keep their run_ids
    plain = {j.run_id for j in load_suite(tiny_suite(FEAT)).jobs if j.variant == "a"}
    assert plain == {j.run_id for j in suite.jobs if j.variant == "a"}
    line = refused_suite(_feat(variants=[A, B | {"train": {"steps": 0}}]))
    assert "variants[1].train.steps" in line and "must be >= 1" in line
    line = refused_suite(_feat(variants=[A, B | {"train": {"stpes": 8}}]))
    assert "variants[1].train.stpes" in line and "did you mean 'steps'" in line


def test_sweep_skips_a_length_projected_over_the_memory_budget(
    tmp_path: Path, tiny_suite: Callable[..., Path],
) -> None:
    """mem_bytes 1, 4 MiB at 8, 16 tokens: n^2, so 16 MiB at 32 and 64 MiB at 64. With a 20 MiB budget
    32 runs and 64 is skipped before it starts, with the projection in the reason; a rerun with a
    larger budget retries it."""
    calls: list[int] = []

    def fake(job: Any, _progress: Any) -> dict[str, Any]:
        if job.kind == "profile":
            calls.append(job.seq_len)
        mem = (job.seq_len or 8) ** 2 * 2**14  # 1 MiB at 8
        return {"run_id": job.run_id, "suite": job.suite, "variant": job.variant, "task": job.task_name,
                "job": job.kind, "seed": job.seed, "seq_len": job.seq_len, "status": "ok", "step_ms": 1.0,
                "mem_bytes": mem}

    results = tmp_path / "results"
    twenty_mib = tiny_suite(FEAT, profile={"max_mem_gib": 0.01953125})
    summary = run_suite(load_suite(twenty_mib), results, quiet=True, runner=fake)
    assert calls == [8, 16, 32] and summary.statuses == {"ok": 9, "skipped": 1}
    skipped = [r for r in ResultStore(results / "feat.jsonl").rows() if r["status"] == "skipped"]
    assert [r["seq_len"] for r in skipped] == [64]
    why = "projected to 0.1 GiB at n=64 (n^2.00 through n=16 and n=32), over the 0.0 GiB budget"
    assert why in skipped[0]["error"]
    calls.clear()
    bigger = tiny_suite(FEAT, profile={"max_mem_gib": 1})
    again = run_suite(load_suite(bigger), results, quiet=True, runner=fake)
    assert calls == [64] and again.statuses == {"ok": 1}


def test_memory_budget_defaults_to_a_quarter_of_the_ram_on_cpu(tiny_suite: Callable[..., Path]) -> None:
    from harness.core.device import physical_memory_bytes
    from harness.run.limits import mem_budget_bytes

    job = next(j for j in load_suite(tiny_suite(FEAT)).jobs if j.kind == "profile")
    ram = physical_memory_bytes()
    assert ram is not None and ram > 2**30
    assert mem_budget_bytes(job) == ram / 4
    job.max_mem_gib = 2.0
    assert mem_budget_bytes(job) == 2 * 2**30
    job.max_mem_gib, job.device = None, "cuda"
    assert mem_budget_bytes(job) is None  # an OOM on the GPU is caught and recorded


def test_max_mem_gib_is_validated(refused_suite: Any) -> None:
    line = refused_suite(_feat(profile={"max_mem_gib": 0}))
    assert "profile.max_mem_gib" in line and "must be > 0" in line


# the tiny suite for key resolution: the suite's model: sets no n_layers; a preset variant with a sweep
RESOLUTION = dict(
    name="order",
    seeds=[0],
    baseline=None,
    train=section_only("train", steps=1, batch_size=2),
    model={"d_model": 64, "n_heads": 4, "d_ff": 128, "n_layers": None, "dropout": 0.0},
    variants=[{"name": "plain", "model": "vanilla"},
              {"name": "big", "model": "transformer-base", "n_heads": 2, "sweep": {"d_ff": [96]}}],
    profile={"seq_lens": [64], "batch_size": 1},
)


def test_model_keys_resolve_in_order(tiny_suite: Callable[..., Path]) -> None:
    """Later wins: model defaults, preset, the suite's model:, the variant's keys, sweep values; the task
    fills vocab_size and max_len; a cost-sweep cell's max_len grows to its length."""
    suite = load_suite(tiny_suite(RESOLUTION))
    cfg = {(j.variant, j.kind): j.model_cfg for j in suite.jobs}
    plain, big = cfg[("plain", "train")], cfg[("big-d_ff96", "train")]
    assert plain["vocab_size"] == 8 and plain["max_len"] == 9  # the copy task's: 4 + 4 specials; 4 + 1 + 4
    assert plain["n_layers"] == 2 and plain["d_model"] == 64  # the model's default; the suite's model:
    assert big["arch"] == "encdec" and big["n_layers"] == 6 and big["vocab_size"] == 37000  # the preset
    assert big["max_len"] == 512 and big["d_model"] == 64 and big["dropout"] == 0.0  # suite over preset
    assert big["n_heads"] == 2 and big["d_ff"] == 96  # the variant's own key, then the sweep value
    assert cfg[("plain", "profile")]["max_len"] == 64 and cfg[("big-d_ff96", "profile")]["max_len"] == 512
    assert {j.preset for j in suite.jobs if j.variant == "big-d_ff96"} == {"transformer-base"}


def test_profile_command_resolves_like_a_suite() -> None:
    """harness profile: the preset, then the user's keys; the task's vocabulary; the profiled length."""
    from harness.suite.jobs import profile_target

    entry, cfg, tentry, _ = profile_target("transformer-base", None, 1024, {"n_layers": 1}, {"n_layers": "x"})
    assert entry.name == "vanilla" and tentry.name == "copy"
    assert cfg.n_layers == 1 and cfg.d_model == 512 and cfg.vocab_size == 37000 and cfg.max_len == 1024
    _, small, _, _ = profile_target("vanilla", None, 16, {}, {})
    assert small.vocab_size == 14 and small.max_len == 512  # copy's vocabulary; the default length


def test_sweep_rows_carry_the_model_extras_like_training_rows(
    tmp_path: Path, tiny_suite: Callable[..., Path],
) -> None:
    """One row type: an ACT model's cost-sweep cells carry ponder_steps, as its training rows do."""
    act = {"name": "a", "model": "universal", "act": True, "max_steps": 2}
    path = tiny_suite(FEAT, seeds=[0], variants=[act, B], profile={"seq_lens": [8]})
    summary = run_suite(load_suite(path), tmp_path / "res", quiet=True)
    rows = list(ResultStore(summary.results_path).rows())
    act = [r for r in rows if r["variant"] == "a" and r["status"] == "ok"]
    assert {r["job"] for r in act} == {"train", "profile"}
    for r in act:
        assert 1.0 <= r["ponder_steps"] <= 2.0, r
    assert all("ponder_steps" not in r for r in rows if r["variant"] == "b")
