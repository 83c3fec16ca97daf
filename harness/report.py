"""Turn result rows into report/tables.md and report/figures/*.png.

The report has three parts (DESIGN.md, "The report"): the notes' two literature tables with "measured
here" columns, one ablation section per suite, and provenance. Paper numbers come from
``harness/literature.yaml``; measurements come only from result rows, and the two never share a cell.

The same result files always give byte-identical output: every collection is sorted before use, floats
are printed with fixed formats, figures are drawn with matplotlib's default style on the Agg canvas at a
fixed size and dpi, and PNG metadata carries no software version. No torch import here.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.stats import fit_power_law, holm, mean_ci, paired_diff

__all__ = [
    "LITERATURE_PATH",
    "TaskSummary",
    "VariantSummary",
    "ablation",
    "fmt_bytes",
    "fmt_count",
    "fmt_gflops",
    "fmt_rate",
    "load_literature",
    "load_rows",
    "suite_table",
    "write_report",
]

Lang = Literal["en", "zh"]
Row = dict[str, Any]

LITERATURE_PATH = Path(__file__).with_name("literature.yaml")
ALPHA = 0.05  # family-wise level of the verdict column (Holm-corrected)
DASH = "—"  # a measured cell without a measurement
PROFILE_QUANTITIES = ("step_ms", "act_bytes", "mem_bytes")
_STATIC_COST = ("params", "params_applied", "flops_fwd")
_DYNAMIC_COST = ("mem_bytes", "act_bytes", "step_ms", "tokens_per_s", "mfu")

# ----------------------------------------------------------------------------------------------- words
_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "# Transformer variants: paper results and measurements",
        "intro": (
            "Paper columns (Year to Other) hold what the papers report; columns marked *(measured)* hold "
            "this harness's own runs, at the scale stated in the *Scale* column - small synthetic tasks, "
            "not the papers' datasets, so a measured number is never a reproduction of a paper number. "
            "`n/r`: not reported or not confirmed; `(unverified)`: no readable copy of the paper confirmed "
            "the number; `—`: nothing measured here (yet). Intervals are 95% Student-t intervals over "
            "seeds; differences are paired by seed."
        ),
        "series_transformer": "## Transformer series",
        "series_cv": "## Transformer in CV series",
        "suite": "## Suite: {suite}",
        "task": "### Task: {task}",
        "grid": "### Overview: {metrics} per variant and task (mean over seeds, n)",
        "profile": "### Cost against input size ({task}; tokens, or the image side in pixels for image tasks)",
        "provenance": "## Provenance",
        "no_results": "No result rows found in `{path}`.",
        "baseline_is": "Baseline: `{baseline}`; every other variant is compared with it, paired by seed.",
        "no_baseline": "No baseline variant declared or present; no paired comparisons.",
        "direction": (
            "{metric}: {direction} is better. Verdict: Holm-corrected p < {alpha} over the {k} "
            "comparison(s) in this table."
        ),
        "higher": "higher",
        "lower": "lower",
        "scale": "Scale: {scale}.",
        "failed": "Jobs that did not finish ok:",
        "superseded": "{n} older row(s) for the same variant, task and seed were superseded by newer ones.",
        "fig_metric": "Every seed's final {metric} per variant (dots), with mean and 95% CI (black).",
        "fig_cost": "Cost against sequence length on log-log axes; the legend gives each fitted exponent.",
        "exp_table": "Fitted exponents k of cost ∝ seq_len^k (least squares on log-log{range}):",
        "exp_range": ", lengths {lo} to {hi}",
        "overtake": ("Length from which each variant costs less than each reference (default: the `vanilla` variants) at "
                     "every longer measured length; a reference that ran out of memory or was skipped counts as "
                     "costing more:"),
        "ratio": "Cost relative to each reference at n = {n} (variant / reference; below 1 is cheaper):",
        "never": "not up to {n}",
        "from_start": "from {n} (the shortest)",
        "matrix_note": ("Rows: how the model was trained; columns: how it was evaluated. Each cell: {metric} "
                        "mean ± 95% CI over seeds (n), then the paper's number in brackets where it has one."),
        "better": "better beyond seed noise",
        "worse": "worse beyond seed noise",
        "same": "within seed noise",
        "baseline": "baseline",
        "na": DASH,
        "ref": "baseline (reference)",
        "notes_diff": "{value} (notes: {notes})",
        "steps": "{n} steps",
        "prov_rows": "Result rows: {n} (from {files} file(s); {skipped} unreadable line(s) skipped).",
        "prov_devices": "Devices",
        "prov_device_names": "Device names",
        "prov_torch": "torch versions",
        "prov_harness": "harness versions",
        "prov_commits": "git commits",
        "prov_dates": "Finished between {a} and {b} (UTC).",
        "prov_none": "none recorded",
    },
    "zh": {
        "title": "# Transformer 变体：论文结果与实测",
        "intro": (
            "从“时间”到“其它”的各列是论文报告的内容；标有“实测”的列是本项目自己的运行结果，"
            "其规模写在“实测规模”一列中：小规模合成任务，而不是论文中的数据集，因此实测数字不是对论文数字的复现。"
            "`n/r`：论文未报告或未核实；`(unverified)`：没有可读的论文原文确认该数字；`—`：本项目（尚）未测量。"
            "区间为各随机种子上的 95% Student-t 置信区间；差值按种子配对。"
        ),
        "series_transformer": "## Transformer系列论文",
        "series_cv": "## Transformer in CV系列论文",
        "suite": "## 实验套件：{suite}",
        "task": "### 任务：{task}",
        "grid": "### 总览：各变体与任务的 {metrics}（种子均值，n）",
        "profile": "### 开销随输入规模的变化（{task}；词元数，图像任务为图像边长像素）",
        "provenance": "## 来源信息",
        "no_results": "在 `{path}` 中没有找到结果。",
        "baseline_is": "基线：`{baseline}`；其余变体均按种子配对与其比较。",
        "no_baseline": "未声明或缺少基线变体，因此没有配对比较。",
        "direction": "{metric}：越{direction}越好。结论列：对本表 {k} 个比较做 Holm 校正后 p < {alpha}。",
        "higher": "高",
        "lower": "低",
        "scale": "规模：{scale}。",
        "failed": "未正常结束的运行：",
        "superseded": "同一变体、任务与种子的 {n} 条旧结果已被新结果取代。",
        "fig_metric": "每个变体在各随机种子上的最终 {metric}（圆点），以及均值与 95% 置信区间（黑色）。",
        "fig_cost": "双对数坐标下开销随序列长度的变化；图例中给出拟合的指数。",
        "exp_table": "拟合指数 k（开销 ∝ seq_len^k，双对数最小二乘{range}）：",
        "exp_range": "，长度 {lo} 至 {hi}",
        "overtake": "各变体从哪个长度起（且在所有更长的实测长度上）开销低于各参照模型（`vanilla`）；参照模型内存不足或被跳过的长度算作参照更贵：",
        "ratio": "n = {n} 时相对各参照模型的开销（变体 / 参照；小于 1 表示更省）：",
        "never": "至 {n} 未超过",
        "from_start": "自 {n}（最短长度）起",
        "matrix_note": "行：训练方式；列：评估方式。每格为 {metric} 的种子均值 ± 95% 置信区间（n），方括号内为论文数字（如有）。",
        "better": "优于基线（超出种子噪声）",
        "worse": "劣于基线（超出种子噪声）",
        "same": "在种子噪声范围内",
        "baseline": "基线",
        "na": DASH,
        "ref": "基线（参照）",
        "notes_diff": "{value}（笔记：{notes}）",
        "steps": "{n} 步",
        "prov_rows": "结果行数：{n}（来自 {files} 个文件；跳过 {skipped} 行无法解析的内容）。",
        "prov_devices": "设备",
        "prov_device_names": "设备名称",
        "prov_torch": "torch 版本",
        "prov_harness": "harness 版本",
        "prov_commits": "git 提交",
        "prov_dates": "完成时间范围：{a} 至 {b}（UTC）。",
        "prov_none": "无记录",
    },
}

_LIT_HEADERS: dict[str, list[str]] = {
    "en": ["Year", "Venue", "Title", "Problem", "Method", "Result", "Training details", "Other",
           "Scale (measured)", "Params (measured)", "GFLOPs/example (measured)", "Peak memory (measured)",
           "Throughput, tokens/s (measured)", "Headline metric, mean ± 95% CI (measured)",
           "Δ vs vanilla baseline, paired (measured)"],
    "zh": ["时间", "会议", "题目", "想解决的问题", "使用的方法", "结果", "训练细节", "其它",
           "实测规模", "实测参数量", "实测 GFLOPs/样本", "实测峰值内存", "实测吞吐（tokens/s）",
           "实测主要指标（均值 ± 95% CI）", "实测相对 vanilla 基线的变化（配对）"],
}

_ABL_HEADERS: dict[str, dict[str, str]] = {
    "en": {"variant": "variant", "runs": "runs", "metric": "{metric} (mean ± 95% CI)", "n": "n",
           "diff": "Δ vs {baseline} (95% CI)", "p": "p (Holm)", "verdict": "verdict", "params": "params",
           "params_applied": "params applied", "flops_fwd": "GFLOPs/ex", "mem_bytes": "peak mem",
           "act_bytes": "act mem", "step_ms": "step ms", "tokens_per_s": "tokens/s", "mfu": "MFU"},
    "zh": {"variant": "变体", "runs": "运行", "metric": "{metric}（均值 ± 95% CI）", "n": "n",
           "diff": "相对 {baseline} 的差（95% CI）", "p": "p（Holm 校正）", "verdict": "结论",
           "params": "参数量", "params_applied": "应用参数量", "flops_fwd": "GFLOPs/样本",
           "mem_bytes": "峰值内存", "act_bytes": "激活内存", "step_ms": "步时 ms", "tokens_per_s": "tokens/s",
           "mfu": "MFU"},
}


def _t(lang: str, key: str, **kw: Any) -> str:
    return _TEXT[lang][key].format(**kw)


# -------------------------------------------------------------------------------------------- loading
def _load(results_dir: Path) -> tuple[list[Row], int, int]:
    """Rows of every ``*.jsonl`` in ``results_dir`` (last row per run_id wins), skipped lines, file count."""
    by_id: dict[str, Row] = {}
    anonymous: list[Row] = []
    skipped = 0
    files = sorted(Path(results_dir).glob("*.jsonl")) if Path(results_dir).is_dir() else []
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    skipped += 1
                    continue
                if not isinstance(obj, dict):
                    skipped += 1
                    continue
                rid = obj.get("run_id")
                if isinstance(rid, str) and rid:
                    by_id.pop(rid, None)
                    by_id[rid] = obj
                else:
                    anonymous.append(obj)
    rows = sorted([*by_id.values(), *anonymous], key=_row_order)
    return rows, skipped, len(files)


def load_rows(results_dir: Path) -> list[Row]:
    """Result rows from ``results_dir/*.jsonl``: unparseable lines skipped, the last row per run_id kept."""
    return _load(results_dir)[0]


def load_literature(path: Path | None = None) -> list[dict[str, Any]]:
    """The paper list from ``literature.yaml`` (see the schema at the top of that file)."""
    with Path(path or LITERATURE_PATH).open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    papers = data.get("papers", []) if isinstance(data, dict) else []
    return [p for p in papers if isinstance(p, dict)]


# ------------------------------------------------------------------------------------------- helpers
def _finite(x: Any) -> bool:
    if x is None or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def cost_references(spec: Mapping[str, Any] | None, models: Mapping[str, str]) -> list[str]:
    """The variants a cost sweep is compared against: the report spec's ``references``, else every
    ``vanilla`` variant (natural order); only those among ``models`` (variant -> registered model)."""
    named = [str(v) for v in (spec or {}).get("references") or []]
    refs = named or sorted((v for v, m in models.items() if m == "vanilla"), key=_natural)
    return [v for v in refs if v in models]


def _natural(s: Any) -> tuple[tuple[int, int, str], ...]:
    """Sort key putting ``k2`` before ``k10``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(s)) if p)


def _order(x: Any) -> tuple[int, float, str]:
    """Total order over mixed scalars (None first, numbers by value, then strings)."""
    if x is None:
        return (0, 0.0, "")
    if _finite(x):
        return (1, float(x), "")
    return (2, 0.0, str(x))


def _row_order(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (str(r.get("suite")), str(r.get("job") or "train"), _natural(r.get("task")),
            _natural(r.get("variant")), _order(r.get("seed")), _order(r.get("seq_len")),
            str(r.get("finished_at")), str(r.get("run_id")))


def _job(r: Mapping[str, Any]) -> str:
    return "profile" if r.get("job") == "profile" else "train"


def _dig(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def _first(*xs: Any) -> Any:
    return next((x for x in xs if x is not None), None)


def _seq_len(r: Mapping[str, Any]) -> Any:
    """The row's sequence length: tokens per example as measured (train) or profiled (profile)."""
    return _first(r.get("seq_len"), _dig(r.get("config"), "task", "seq_len"), _dig(r.get("config"), "seq_len"))


def _task_len(r: Mapping[str, Any]) -> Any:
    """The task's configured length (the suite's ``seq_len``), which may differ from tokens per example."""
    return _first(_dig(r.get("config"), "task", "seq_len"), _dig(r.get("config"), "seq_len"), r.get("seq_len"))


def _steps(r: Mapping[str, Any]) -> Any:
    return _first(_dig(r.get("config"), "train", "steps"), _dig(r.get("config"), "steps"))


def _batch(r: Mapping[str, Any]) -> Any:
    return _first(r.get("batch_size"), _dig(r.get("config"), "train", "batch_size"),
                  _dig(r.get("config"), "batch_size"))


def _mode(values: Iterable[Any]) -> Any:
    """Most common non-null value; ties go to the smallest in sort order."""
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None
    best = max(counts.values())
    return min((v for v, c in counts.items() if c == best), key=lambda v: (str(type(v)), str(v)))


def _median(values: Iterable[Any]) -> float | None:
    xs = sorted(float(v) for v in values if _finite(v))
    return statistics.median(xs) if xs else None


def _uniq(values: Iterable[Any]) -> list[Any]:
    return sorted({v for v in values if v is not None}, key=_order)


def _latest(rows: Iterable[Row], key: tuple[str, ...]) -> tuple[list[Row], int]:
    """One row per ``key`` combination: the most recently finished; also the number dropped."""
    best: dict[tuple[Any, ...], Row] = {}
    dropped = 0
    for r in rows:
        k = tuple(str(r.get(f)) for f in key)
        old = best.get(k)
        if old is not None:
            dropped += 1
            if (str(old.get("finished_at")), str(old.get("run_id"))) > (
                    str(r.get("finished_at")), str(r.get("run_id"))):
                continue
        best[k] = r
    return sorted(best.values(), key=_row_order), dropped


def _as_rows(rows: Any) -> list[Row]:
    """Accept a list of dicts or a pandas DataFrame (as ``harness.load_results`` returns)."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        records = rows.to_dict("records")
        return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
                for rec in records]
    return [dict(r) for r in rows]


# ---------------------------------------------------------------------------------------- formatting
def _sig(x: float, n: int = 3) -> str:
    """``x`` rounded to ``n`` significant digits, written without an exponent."""
    if x == 0:
        return "0"
    r = float(f"{x:.{n}g}")
    if r == 0:
        return "0"
    decimals = max(0, n - 1 - math.floor(math.log10(abs(r))))
    return f"{r:.{decimals}f}"


def fmt_count(x: Any) -> str:
    """Parameter counts: 812, 12.3K, 63.1M, 1.20B."""
    if not _finite(x):
        return DASH
    x = float(x)
    for div, suffix, decimals in ((1e9, "B", 2), (1e6, "M", 1), (1e3, "K", 1)):
        if round(abs(x) / div, decimals) >= 1:  # 999,960 prints as 1.0M, not 1000.0K
            return f"{x / div:.{decimals}f}{suffix}"
    return f"{x:.0f}"


def fmt_gflops(x: Any) -> str:
    """FLOPs as GFLOPs with 3 significant digits."""
    return _sig(float(x) / 1e9) if _finite(x) else DASH


def fmt_bytes(x: Any) -> str:
    """Bytes in binary units: 512 B, 3.5 KiB, 12.3 MiB, 1.25 GiB."""
    if not _finite(x):
        return DASH
    x = float(x)
    if abs(x) >= 2**30:
        return f"{x / 2**30:.2f} GiB"
    if abs(x) >= 2**20:
        return f"{x / 2**20:.1f} MiB"
    if abs(x) >= 2**10:
        return f"{x / 2**10:.1f} KiB"
    return f"{x:.0f} B"


def fmt_rate(x: Any) -> str:
    """Throughput with 3 significant digits and a K/M suffix."""
    if not _finite(x):
        return DASH
    x = float(x)
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return _sig(x / div) + suffix
    return _sig(x)


def _fmt_ms(x: Any) -> str:
    return _sig(float(x)) if _finite(x) else DASH


def _fmt_mfu(x: Any) -> str:
    return _sig(100.0 * float(x)) + "%" if _finite(x) else DASH


def _fmt_p(p: float) -> str:
    if not _finite(p):
        return DASH
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _fmt_mean(mean: float, hw: float, n: int) -> str:
    if n == 0 or not _finite(mean):
        return DASH
    return f"{mean:.4f} ± {hw:.4f}" if _finite(hw) else f"{mean:.4f} (no CI, n=1)"


def _fmt_diff(diff: float, hw: float) -> str:
    if not _finite(diff):
        return DASH
    return f"{diff:+.4f} ± {hw:.4f}" if _finite(hw) else f"{diff:+.4f}"


def _cell(text: Any) -> str:
    """Make a string safe for one markdown table cell."""
    s = DASH if text is None or str(text).strip() == "" else str(text)
    return s.replace("\r", "").replace("\n", "<br>").replace("|", "\\|")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(_cell(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _slug(*parts: Any) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(p)).strip("_") or "x" for p in parts)


# ------------------------------------------------------------------------------------------- ablation
@dataclass
class VariantSummary:
    """One line of an ablation table: a variant's seeds, its comparison with the baseline, its cost."""

    variant: str
    is_baseline: bool
    status: dict[str, int]
    values: dict[Any, float]
    mean: float
    half_width: float
    n: int
    diff: float = math.nan
    diff_half_width: float = math.nan
    p: float = math.nan
    p_holm: float = math.nan
    n_pairs: int = 0
    verdict: str = "na"  # better | worse | same | baseline | na
    cost: dict[str, float | None] = field(default_factory=dict)
    mem_kinds: tuple[str, ...] = ()


@dataclass
class TaskSummary:
    """The ablation of one (suite, task): one :class:`VariantSummary` per variant, baseline first."""

    suite: str
    task: str
    metric: str | None
    higher_is_better: bool
    baseline: str | None
    variants: list[VariantSummary]
    failures: list[Row]
    superseded: int
    scale: dict[str, list[Any]]

    def get(self, variant: str) -> VariantSummary | None:
        return next((v for v in self.variants if v.variant == variant), None)


def _value(r: Mapping[str, Any], metric: str | None) -> Any:
    if metric is not None and r.get("metric") != metric:
        metrics = r.get("metrics")
        return metrics.get(metric) if isinstance(metrics, Mapping) else None
    return r.get("value")


def ablation(rows: Iterable[Mapping[str, Any]], suite: str, task: str, metric: str | None = None,
             baseline: str | None = None) -> TaskSummary:
    """Summarise the training rows of one suite and task.

    Per (variant, seed) the most recently finished row counts. ``metric`` defaults to the rows' headline
    metric and ``baseline`` to the suite's declared baseline. p values are Holm-corrected over the
    non-baseline variants of this table.
    """
    picked = [dict(r) for r in rows if r.get("suite") == suite and r.get("task") == task and _job(r) == "train"]
    latest, superseded = _latest(picked, ("variant", "seed"))
    metric = metric or _mode(r.get("metric") for r in latest if r.get("status") == "ok") \
        or _mode(r.get("metric") for r in latest)
    hib = _mode(r.get("higher_is_better") for r in latest if r.get("status") == "ok")
    hib = True if hib is None else bool(hib)
    baseline = baseline or _mode(r.get("baseline") for r in latest)

    by_variant: dict[str, list[Row]] = {}
    for r in latest:
        by_variant.setdefault(str(r.get("variant")), []).append(r)
    names = sorted(by_variant, key=lambda v: (v != baseline, _natural(v)))

    def seed_values(rs: list[Row]) -> dict[Any, float]:
        return {r.get("seed"): float(_value(r, metric)) for r in rs
                if r.get("status") == "ok" and _finite(_value(r, metric))}

    base_vals = seed_values(by_variant.get(baseline, [])) if baseline else {}
    summaries: list[VariantSummary] = []
    for name in names:
        rs = by_variant[name]
        ok = [r for r in rs if r.get("status") == "ok"]
        vals = seed_values(rs)
        mean, hw, n = mean_ci(vals.values())
        cost: dict[str, float | None] = {k: _median(r.get(k) for r in rs) for k in _STATIC_COST}
        cost.update({k: _median(r.get(k) for r in ok) for k in _DYNAMIC_COST})
        s = VariantSummary(variant=name, is_baseline=name == baseline,
                           status=dict(sorted(Counter(str(r.get("status") or "unknown") for r in rs).items())),
                           values=dict(sorted(vals.items(), key=lambda kv: _order(kv[0]))),
                           mean=mean, half_width=hw, n=n, cost=cost,
                           mem_kinds=tuple(_uniq(r.get("mem_kind") for r in ok)))
        if s.is_baseline:
            s.verdict = "baseline"
        elif base_vals:
            s.diff, s.diff_half_width, s.p, s.n_pairs = paired_diff(vals, base_vals)
        summaries.append(s)

    comparisons = [s for s in summaries if not s.is_baseline]
    for s, adj in zip(comparisons, holm([s.p for s in comparisons])):
        s.p_holm = adj
        if _finite(adj):
            if adj < ALPHA and s.diff != 0:
                s.verdict = "better" if (s.diff > 0) == hib else "worse"
            else:
                s.verdict = "same"

    failures = sorted((r for r in latest if r.get("status") != "ok"), key=_row_order)
    scale = {"seq_len": _uniq(_task_len(r) for r in latest), "tokens": _uniq(_seq_len(r) for r in latest),
             "steps": _uniq(_steps(r) for r in latest),
             "batch_size": _uniq(_batch(r) for r in latest), "device": _uniq(r.get("device") for r in latest),
             "device_name": _uniq(r.get("device_name") for r in latest),
             "mem_kind": _uniq(r.get("mem_kind") for r in latest)}
    return TaskSummary(suite=suite, task=task, metric=metric, higher_is_better=hib,
                       baseline=baseline if baseline in by_variant else None, variants=summaries,
                       failures=failures, superseded=superseded, scale=scale)


def _runs_cell(s: VariantSummary) -> str:
    total = sum(s.status.values())
    ok = s.status.get("ok", 0)
    if ok == total:
        return str(total)
    others = ", ".join(f"{c} {k}" for k, c in s.status.items() if k != "ok")
    return f"{ok}/{total} ok ({others})"


def _ablation_rows(ts: TaskSummary, lang: str) -> tuple[list[str], list[list[str]]]:
    h = _ABL_HEADERS[lang]
    show_applied = any(_finite(s.cost.get("params_applied")) and s.cost.get("params_applied") != s.cost.get("params")
                       for s in ts.variants)
    mixed_mem = len({k for s in ts.variants for k in s.mem_kinds}) > 1
    cost_keys = ["params", *(["params_applied"] if show_applied else []), "flops_fwd", "mem_bytes", "act_bytes",
                 "step_ms", "tokens_per_s", "mfu"]
    headers = [h["variant"], h["runs"], h["metric"].format(metric=ts.metric or "value"), h["n"],
               h["diff"].format(baseline=ts.baseline or "baseline"), h["p"], h["verdict"],
               *(h[k] for k in cost_keys)]
    out: list[list[str]] = []
    for s in ts.variants:
        c = s.cost
        cost_cells = {
            "params": fmt_count(c.get("params")),
            "params_applied": fmt_count(c.get("params_applied")) if c.get("params_applied") != c.get("params") else "",
            "flops_fwd": fmt_gflops(c.get("flops_fwd")),
            "mem_bytes": fmt_bytes(c.get("mem_bytes")) + (f" [{'/'.join(s.mem_kinds)}]" if mixed_mem and
                                                         s.mem_kinds else ""),
            "act_bytes": fmt_bytes(c.get("act_bytes")),
            "step_ms": _fmt_ms(c.get("step_ms")),
            "tokens_per_s": fmt_rate(c.get("tokens_per_s")),
            "mfu": _fmt_mfu(c.get("mfu")),
        }
        diff = _t(lang, "ref") if s.is_baseline else _fmt_diff(s.diff, s.diff_half_width)
        out.append([s.variant, _runs_cell(s), _fmt_mean(s.mean, s.half_width, s.n), str(s.n), diff,
                    DASH if s.is_baseline else _fmt_p(s.p_holm), _t(lang, s.verdict),
                    *(cost_cells[k] for k in cost_keys)])
    return headers, out


def _scale_text(ts: TaskSummary, lang: str, short: bool = False) -> str:
    def join(xs: list[Any]) -> str:
        return "/".join(str(x) for x in xs)

    sc = ts.scale
    parts = [f"{ts.suite}/{ts.task}"]
    if sc["seq_len"]:
        tokens = "" if sc["tokens"] == sc["seq_len"] or not sc["tokens"] else (
            f"（每样本 {join(sc['tokens'])} tokens）" if lang == "zh" else f" ({join(sc['tokens'])} tokens/example)")
        parts.append(f"L={join(sc['seq_len'])}{tokens}")
    if sc["steps"]:
        parts.append(_t(lang, "steps", n=join(sc["steps"])))
    if sc["batch_size"]:
        parts.append(f"batch {join(sc['batch_size'])}")
    if sc["device"]:
        parts.append(join(sc["device"]))
    if not short:
        if sc["device_name"]:
            parts.append(join(sc["device_name"]))
        if sc["mem_kind"]:
            parts.append(("内存口径 " if lang == "zh" else "memory: ") + join(sc["mem_kind"]))
    return ("，" if lang == "zh" else ", ").join(parts)


def suite_table(rows: Any, suite: str) -> str:
    """The suite's ablation tables as plain text for the terminal (one table per task)."""
    from tabulate import tabulate

    rows = _as_rows(rows)
    tasks = sorted({str(r.get("task")) for r in rows if r.get("suite") == suite and _job(r) == "train"},
                   key=_natural)
    if not tasks:
        return f"No results for suite {suite!r}."
    blocks: list[str] = []
    for task in tasks:
        ts = ablation(rows, suite, task)
        headers, body = _ablation_rows(ts, "en")
        direction = "higher" if ts.higher_is_better else "lower"
        blocks.append(f"{suite} / {task}  ({_scale_text(ts, 'en', short=True)}; {ts.metric}: {direction} is better;"
                      f" baseline {ts.baseline or 'none'})\n"
                      + tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True))
    return "\n\n".join(blocks)


# ------------------------------------------------------------------------------------------- profile
@dataclass
class _ProfileSeries:
    variant: str
    points: dict[str, list[tuple[float, float]]]  # quantity -> sorted (seq_len, value)
    exponents: dict[str, float]
    failures: list[Row]


def _profile(rows: Iterable[Mapping[str, Any]], suite: str, task: str,
             fit_range: Sequence[int] = ()) -> list[_ProfileSeries]:
    picked = [dict(r) for r in rows if r.get("suite") == suite and r.get("task") == task and _job(r) == "profile"]
    latest, _ = _latest(picked, ("variant", "seq_len", "seed"))
    out: list[_ProfileSeries] = []
    for variant in sorted({str(r.get("variant")) for r in latest}, key=_natural):
        rs = [r for r in latest if str(r.get("variant")) == variant]
        ok = [r for r in rs if r.get("status") == "ok" and _finite(_seq_len(r))]
        points: dict[str, list[tuple[float, float]]] = {}
        exps: dict[str, float] = {}
        for q in PROFILE_QUANTITIES:
            by_len: dict[float, list[Any]] = {}
            for r in ok:
                by_len.setdefault(float(_seq_len(r)), []).append(r.get(q))
            pts = [(x, m) for x, vs in sorted(by_len.items()) if (m := _median(vs)) is not None and m > 0]
            points[q] = pts
            fit = [(x, y) for x, y in pts if not fit_range or fit_range[0] <= x <= fit_range[1]]
            exps[q] = fit_power_law([x for x, _ in fit], [y for _, y in fit])[0]
        out.append(_ProfileSeries(variant, points, exps,
                                  sorted((r for r in rs if r.get("status") != "ok"), key=_row_order)))
    return out


# ------------------------------------------------------------------------------------------- figures
_RC: Any = {"figure.dpi": 100, "savefig.dpi": 100, "font.family": "DejaVu Sans", "font.size": 9,
            "axes.titlesize": 10}


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # draw on Agg directly: no pyplot, no global backend switch
    return fig


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})


def _colors() -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i) for i in range(10)]


def _metric_figure(ts: TaskSummary, path: Path) -> None:
    import matplotlib
    import matplotlib.style

    n = len(ts.variants)
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        fig = _new_figure(min(14.0, max(4.5, 1.2 + 0.9 * n)), 3.6)
        ax = fig.add_subplot(1, 1, 1)
        colors = _colors()
        for i, s in enumerate(ts.variants):
            ys = list(s.values.values())
            k = len(ys)
            offs = [0.0] if k == 1 else [-0.2 + 0.4 * j / (k - 1) for j in range(k)]
            ax.scatter([i + o for o in offs], ys, s=22, color=colors[i % len(colors)], alpha=0.8, zorder=2)
            if not ys:
                ax.text(i, 0.03, "no ok run", transform=ax.get_xaxis_transform(), ha="center", fontsize=7,
                        color="gray")
            if s.n >= 1 and _finite(s.mean):
                err = [[s.half_width], [s.half_width]] if _finite(s.half_width) else None
                ax.errorbar([i + 0.32], [s.mean], yerr=err, fmt="D", color="black", ms=4, capsize=3, zorder=3)
        names = [s.variant for s in ts.variants]
        crowded = 0.08 * sum(len(v) + 2 for v in names) > fig.get_figwidth() - 1.0  # ~0.08 in per 9 pt char
        ax.set_xticks(range(n))
        ax.set_xticklabels(names, rotation=30 if crowded else 0, ha="right" if crowded else "center")
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_ylabel(ts.metric or "value")
        ax.set_title(f"{ts.suite} / {ts.task}: {ts.metric} per seed "
                     f"({'higher' if ts.higher_is_better else 'lower'} is better)")
        ax.grid(axis="y", alpha=0.3)
        # fixed margins instead of tight_layout (slow); rotated labels need room in proportion to their length
        label_in = 0.0375 * max(len(v) for v in names) if crowded else 0.0
        fig.subplots_adjust(left=0.75 / fig.get_figwidth(), right=0.98, top=0.9,
                            bottom=min(0.5, (0.45 + label_in) / fig.get_figheight()))
        _save(fig, path)


def _loglog(ax: Any, xs: list[float]) -> None:
    """Log-log axes labelled with plain numbers (mathtext tick labels are slow and hard to read)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # labels even within one decade
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _sig(v, 1)))  # ticks are exactly 1, 2, 5 x 10^k
    ax.yaxis.set_minor_formatter(NullFormatter())


def _cost_figure(series: list[_ProfileSeries], suite: str, task: str, path: Path) -> None:
    import matplotlib
    import matplotlib.style

    labels = {"step_ms": "step time (ms)", "act_bytes": "saved activations (MiB)", "mem_bytes": "peak memory (MiB)"}
    scale = {"step_ms": 1.0, "act_bytes": 1.0 / 2**20, "mem_bytes": 1.0 / 2**20}
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        fig = _new_figure(13.0, 4.0)
        colors = _colors()
        for j, q in enumerate(PROFILE_QUANTITIES):
            ax = fig.add_subplot(1, len(PROFILE_QUANTITIES), j + 1)
            drawn = False
            for i, ps in enumerate(series):
                pts = ps.points.get(q, [])
                if not pts:
                    continue
                k = ps.exponents.get(q, math.nan)
                label = f"{ps.variant} (k={k:.2f})" if _finite(k) else ps.variant
                ax.plot([x for x, _ in pts], [y * scale[q] for _, y in pts], marker="o", ms=4,
                        color=colors[i % len(colors)], label=label)
                drawn = True
            if drawn:
                _loglog(ax, sorted({x for ps in series for x, _ in ps.points.get(q, [])}))
                ax.legend(fontsize=7, loc="upper left")
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel("sequence length")
            ax.set_title(labels[q])
            ax.grid(alpha=0.3)
        fig.suptitle(f"{suite} / {task}: cost against sequence length (log-log)")
        fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.86, wspace=0.25)
        _save(fig, path)


# -------------------------------------------------------------------------------------------- report
def _failure_lines(failures: Iterable[Row]) -> list[str]:
    out = []
    for r in failures:
        where = [f"`{r.get('variant')}`"]
        if r.get("seed") is not None:
            where.append(f"seed {r.get('seed')}")
        if _job(r) == "profile":
            where.append(f"seq_len {_seq_len(r)}")
        err = str(r.get("error") or "").strip().splitlines()
        out.append(f"- {', '.join(where)}: **{r.get('status') or 'unknown'}**" + (f" - {err[0]}" if err else ""))
    return out


def _grid_section(srows: list[Row], spec: Mapping[str, Any], tasks: list[str], lang: str) -> list[str]:
    """A variant x task table of several metrics per cell ("tok_acc / seq_acc"), as papers lay out
    their algorithmic tables; ``spec`` is the suite's ``report:`` key (``grid`` metrics, ``extras``
    row fields such as ponder_steps)."""
    metrics = [str(m) for m in spec.get("grid") or []]
    extras = [str(e) for e in spec.get("extras") or []]
    if not metrics:
        return []
    latest, _ = _latest((r for r in srows if _job(r) == "train"), ("variant", "task", "seed"))
    cells: dict[tuple[str, str], list[Row]] = {}
    for r in latest:
        if r.get("status") == "ok":
            cells.setdefault((str(r.get("variant")), str(r.get("task"))), []).append(r)
    variants = sorted({str(r.get("variant")) for r in latest}, key=_natural)

    def mean(values: list[Any]) -> str:
        vals = [float(v) for v in values if _finite(v)]
        return f"{sum(vals) / len(vals):.3f}" if vals else DASH

    body = []
    for v in variants:
        line = [v]
        for t in tasks:
            rs = cells.get((v, t), [])
            if not rs:
                line.append(DASH)
                continue
            parts = [mean([_dig(r.get("metrics"), m) for r in rs]) for m in metrics]
            text = " / ".join(parts)
            for e in extras:
                if any(_finite(r.get(e)) for r in rs):
                    text += f"; {e} {mean([r.get(e) for r in rs])}"
            line.append(f"{text} (n={len(rs)})")
        body.append(line)
    names = " / ".join(metrics)
    return [_t(lang, "grid", metrics=names), "", _md_table(["variant", *tasks], body), ""]


_CROSS_QUANTITIES = ("step_ms", "act_bytes")


def overtake_length(mine: Mapping[float, float], ref: Mapping[float, float], failed_ref: Iterable[float],
                    lengths: Sequence[float]) -> float | None:
    """The shortest measured length from which ``mine`` < ``ref`` at every longer length where ``mine``
    was measured. A length where the reference failed (oom, skipped) counts as a win; a length where
    ``mine`` was not measured is passed over. None: never."""
    failed = set(failed_ref)
    start: float | None = None
    for n in sorted(lengths):
        if n not in mine:
            continue
        win = n in failed or (n in ref and mine[n] < ref[n])
        lost = n in ref and not win
        if win and start is None:
            start = n
        elif lost:
            start = None
    return start


def _overtake_section(series: list[_ProfileSeries], prows: list[Row], refs: list[str], ratio_at: Any,
                      lang: str) -> list[str]:
    others = [ps for ps in series if ps.variant not in refs]
    if not refs or not others:
        return []
    by_name = {ps.variant: ps for ps in series}
    lengths = sorted({float(_seq_len(r)) for r in prows if _finite(_seq_len(r))})
    failed = {v: [float(_seq_len(r)) for r in prows if str(r.get("variant")) == v and r.get("status") != "ok"
                  and _finite(_seq_len(r))] for v in refs}
    longest = f"{lengths[-1]:.0f}" if lengths else "?"
    headers = ["variant", *(f"{q} < {ref}" for ref in refs for q in _CROSS_QUANTITIES)]
    body = []
    for ps in others:
        line = [ps.variant]
        for ref in refs:
            for q in _CROSS_QUANTITIES:
                mine = dict(ps.points[q])
                n = overtake_length(mine, dict(by_name[ref].points[q]), failed[ref], lengths)
                if n is None:
                    line.append(_t(lang, "never", n=longest))
                elif n == min(mine, default=n):
                    line.append(_t(lang, "from_start", n=f"{n:.0f}"))
                else:
                    line.append(f"{n:.0f}")
        body.append(line)
    out = [_t(lang, "overtake"), "", _md_table(headers, body), ""]
    if _finite(ratio_at):
        at = float(ratio_at)
        rbody = []
        for ps in others:
            line = [ps.variant]
            for ref in refs:
                for q in _CROSS_QUANTITIES:
                    a, b = dict(ps.points[q]).get(at), dict(by_name[ref].points[q]).get(at)
                    line.append(f"{a / b:.3f}" if a is not None and b else DASH)
            rbody.append(line)
        heads = ["variant", *(f"{q} / {ref}" for ref in refs for q in _CROSS_QUANTITIES)]
        out += [_t(lang, "ratio", n=f"{at:.0f}"), "", _md_table(heads, rbody), ""]
    return out


def _matrix_section(srows: list[Row], spec: Mapping[str, Any], lang: str) -> list[str]:
    """Rows = variants (training setting), columns = eval modes, with the paper's table beside ours."""
    metric, scale = str(spec["metric"]), float(spec.get("scale") or 1.0)
    latest, _ = _latest((r for r in srows if _job(r) == "train" and str(r.get("task")) == spec["task"]),
                        ("variant", "task", "seed"))
    paper: Mapping[str, Any] = {}
    if spec.get("paper"):
        pid, _, table = str(spec["paper"]).partition(".")
        entry = next((p for p in load_literature() if p.get("id") == pid), {})
        paper = _dig(entry, "tables", table) or {}
    body = []
    for variant, row_label in spec["rows"].items():
        rs = [r for r in latest if str(r.get("variant")) == variant and r.get("status") == "ok"]
        line = [f"{row_label} (`{variant}`)"]
        for mode, col_label in spec["columns"].items():
            key = f"{metric}@{mode}" if mode else metric
            mean, hw, n = mean_ci([_dig(r.get("metrics"), key) for r in rs])
            if not n:
                text = DASH
            elif scale >= 10:  # percent-like: one decimal, as papers print them
                text = f"{mean * scale:.1f}" + (f" ± {hw * scale:.1f}" if _finite(hw) else "") + f" (n={n})"
            else:
                text = _fmt_mean(mean * scale, hw * scale, n) + f" (n={n})"
            ref = _dig(paper, "values", row_label, col_label)
            if ref is not None:
                text += f" [{ref}]"
            line.append(text)
        body.append(line)
    title = str(spec.get("title") or f"{metric}: {spec['task']}")
    out = [f"### {title}", "", _t(lang, "matrix_note", metric=metric), ""]
    if paper.get("caption"):
        cap = paper["caption"]
        out += [str(cap.get(lang) or cap.get("en")) if isinstance(cap, Mapping) else str(cap), ""]
    return [*out, _md_table(["train \\ eval", *spec["columns"].values()], body), ""]


def _suite_section(rows: list[Row], suite: str, lang: str, fig_dir: Path, figures: list[str]) -> list[str]:
    srows = [r for r in rows if r.get("suite") == suite]
    out = [_t(lang, "suite", suite=suite), ""]
    desc = _mode(r.get("suite_description") for r in srows)
    if desc:
        out += [str(desc).strip(), ""]
    baseline = _mode(r.get("baseline") for r in srows)
    out += [_t(lang, "baseline_is", baseline=baseline) if baseline else _t(lang, "no_baseline"), ""]

    train_tasks = sorted({str(r.get("task")) for r in srows if _job(r) == "train"}, key=_natural)
    # the layout of the most recent run: the suite file as the user has it now
    with_spec = [r for r in srows if r.get("report_spec")]
    spec = json.dumps(max(with_spec, key=lambda r: (str(r.get("finished_at") or ""), _row_order(r)))["report_spec"],
                      sort_keys=True) if with_spec else None
    if spec:
        out += _grid_section(srows, json.loads(spec), train_tasks, lang)
        for m in json.loads(spec).get("matrix") or []:
            out += _matrix_section(srows, m, lang)
    for task in train_tasks:
        ts = ablation(rows, suite, task)
        headers, body = _ablation_rows(ts, lang)
        k = sum(1 for s in ts.variants if not s.is_baseline and _finite(s.p))
        out += [_t(lang, "task", task=task), "", _t(lang, "scale", scale=_scale_text(ts, lang)), "",
                _md_table(headers, body), "",
                _t(lang, "direction", metric=ts.metric, alpha=ALPHA, k=k,
                   direction=_t(lang, "higher" if ts.higher_is_better else "lower")), ""]
        if ts.superseded:
            out += [_t(lang, "superseded", n=ts.superseded), ""]
        if any(s.values for s in ts.variants):
            name = _slug(suite, task, "metric") + ".png"
            _metric_figure(ts, fig_dir / name)
            figures.append(name)
            out += [f"![{suite} {task} {ts.metric}](figures/{name})", "",
                    _t(lang, "fig_metric", metric=ts.metric), ""]
        if ts.failures:
            out += [_t(lang, "failed"), "", *_failure_lines(ts.failures), ""]

    prof_tasks = sorted({str(r.get("task")) for r in srows if _job(r) == "profile"}, key=_natural)
    pspec = json.loads(spec) if spec else {}
    fit_range = [int(x) for x in pspec.get("fit_range") or []]
    for task in prof_tasks:
        series = _profile(rows, suite, task, fit_range)
        prows = [r for r in srows if _job(r) == "profile" and str(r.get("task")) == task]
        lens = "/".join(str(x) for x in _uniq(_seq_len(r) for r in prows))
        batches = "/".join(str(x) for x in _uniq(_batch(r) for r in prows))
        devices = "/".join(str(x) for x in _uniq(r.get("device") for r in prows))
        sep = "，" if lang == "zh" else ", "
        scale = sep.join(p for p in (f"{suite}/{task}", f"L={lens}" if lens else "",
                                     f"batch {batches}" if batches else "", devices) if p)
        out += [_t(lang, "profile", task=task), "", _t(lang, "scale", scale=scale), ""]
        if any(pts for ps in series for pts in ps.points.values()):
            name = _slug(suite, task, "cost") + ".png"
            _cost_figure(series, suite, task, fig_dir / name)
            figures.append(name)
            out += [f"![{suite} {task} cost](figures/{name})", "", _t(lang, "fig_cost"), ""]
        headers = ["variant", *(f"k({q})" for q in PROFILE_QUANTITIES), "seq_len"]
        body = []
        for ps in series:
            xs = sorted({x for pts in ps.points.values() for x, _ in pts})
            span = f"{xs[0]:.0f}–{xs[-1]:.0f} ({len(xs)})" if xs else DASH
            body.append([ps.variant, *(f"{ps.exponents[q]:.2f}" if _finite(ps.exponents[q]) else DASH
                                       for q in PROFILE_QUANTITIES), span])
        rng = _t(lang, "exp_range", lo=fit_range[0], hi=fit_range[1]) if fit_range else ""
        out += [_t(lang, "exp_table", range=rng), "", _md_table(headers, body), ""]
        refs = cost_references(pspec, {str(r.get("variant")): str(r.get("model")) for r in prows})
        refs = [v for v in refs if any(ps.variant == v for ps in series)]
        out += _overtake_section(series, prows, refs, pspec.get("ratio_at"), lang)
        fails = [r for ps in series for r in ps.failures]
        if fails:
            out += [_t(lang, "failed"), "", *_failure_lines(fails), ""]
    return out


def _measured_cells(paper: Mapping[str, Any], rows: list[Row], lang: str,
                    cache: dict[tuple[Any, ...], TaskSummary]) -> list[str]:
    """The seven "measured here" cells of one literature row ("—" where nothing was measured)."""
    spec = paper.get("measured")
    specs = spec if isinstance(spec, list) else [spec] if isinstance(spec, Mapping) else []
    lines: list[list[str]] = []
    for m in specs:
        suite, variant, base = str(m.get("suite")), str(m.get("variant")), m.get("baseline")
        tasks = [m["task"]] if m.get("task") else sorted(
            {str(r.get("task")) for r in rows if r.get("suite") == suite and _job(r) == "train"
             and str(r.get("variant")) == variant}, key=_natural)
        for task in tasks:
            key = (suite, task, m.get("metric"), base)
            if key not in cache:
                cache[key] = ablation(rows, suite, task, metric=m.get("metric"), baseline=base)
            ts = cache[key]
            s = ts.get(variant)
            if s is None:
                continue
            c = s.cost
            mem = fmt_bytes(c.get("mem_bytes"))
            if mem != DASH and s.mem_kinds:
                mem += f" ({'/'.join(s.mem_kinds)})"
            show = m.get("headline", True) is not False
            headline = DASH if s.n == 0 or not show else f"{ts.metric} {_fmt_mean(s.mean, s.half_width, s.n)} (n={s.n})"
            if not show:
                delta = DASH
            elif s.is_baseline:
                delta = _t(lang, "ref")
            elif _finite(s.diff):
                delta = (f"{_fmt_diff(s.diff, s.diff_half_width)} (n={s.n_pairs}, "
                         f"p_Holm={_fmt_p(s.p_holm)}; vs {ts.baseline})")
            else:
                delta = DASH
            label = f"{variant} ({task})" if len(specs) > 1 else task
            lines.append([f"{label}: " if len(tasks) > 1 or len(specs) > 1 else "",
                          _scale_text(ts, lang, short=True), fmt_count(c.get("params")),
                          fmt_gflops(c.get("flops_fwd")), mem, fmt_rate(c.get("tokens_per_s")), headline, delta])
    if not lines:
        return [DASH] * 7
    cells = []
    for j in range(1, 8):
        parts = [ln[j] if j == 1 or ln[j] == DASH else ln[0] + ln[j] for ln in lines]
        cells.append("<br>".join(parts) if any(p != DASH for p in parts) else DASH)
    return cells


def _literature_table(papers: list[dict[str, Any]], series: str, rows: list[Row], lang: str,
                      cache: dict[tuple[Any, ...], TaskSummary]) -> str:
    def text(p: Mapping[str, Any], key: str) -> str:
        v = p.get(key)
        if isinstance(v, Mapping):
            v = v.get(lang) or v.get("en")
        return str(v).strip() if v else DASH

    def with_notes(p: Mapping[str, Any], key: str) -> str:
        value, notes = p.get(key), _dig(p.get("notes"), key)
        if value is None:
            return DASH
        if notes is not None and str(notes) != str(value):
            return _t(lang, "notes_diff", value=value, notes=notes)
        return str(value)

    body = []
    for p in papers:
        if p.get("series") != series:
            continue
        title = str(p.get("title") or p.get("id"))
        if p.get("arxiv"):
            title = f"[{title}](https://arxiv.org/abs/{p['arxiv']})"
        body.append([with_notes(p, "year"), with_notes(p, "venue"), title,
                     *(text(p, k) for k in ("problem", "method", "result", "training", "other")),
                     *_measured_cells(p, rows, lang, cache)])
    return _md_table(_LIT_HEADERS[lang], body)


def _provenance(rows: list[Row], skipped: int, n_files: int, lang: str) -> list[str]:
    def counted(field_: str) -> str:
        c = Counter(str(r.get(field_)) for r in rows if r.get(field_) is not None)
        return ", ".join(f"`{k}` ({v})" for k, v in sorted(c.items())) or _t(lang, "prov_none")

    out = [_t(lang, "provenance"), "", "- " + _t(lang, "prov_rows", n=len(rows), files=n_files, skipped=skipped)]
    for key, fld in (("prov_devices", "device"), ("prov_device_names", "device_name"),
                     ("prov_torch", "torch_version"), ("prov_harness", "harness_version"),
                     ("prov_commits", "git_commit")):
        out.append(f"- {_t(lang, key)}: {counted(fld)}")
    stamps = sorted(str(r["finished_at"]) for r in rows if r.get("finished_at"))
    if stamps:
        out.append("- " + _t(lang, "prov_dates", a=stamps[0], b=stamps[-1]))
    return out + [""]


def write_report(results_dir: Path, report_dir: Path, lang: str = "en") -> Path:
    """Write ``report_dir/tables.md`` and ``report_dir/figures/*.png``; return the tables path.

    Figures that an earlier report wrote but this one does not are deleted, so the folder always matches
    the results it was built from.
    """
    if lang not in _TEXT:
        raise ValueError(f"unknown report language {lang!r}; expected one of {sorted(_TEXT)}")
    results_dir, report_dir = Path(results_dir), Path(report_dir)
    rows, skipped, n_files = _load(results_dir)
    fig_dir = report_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures: list[str] = []
    cache: dict[tuple[Any, ...], TaskSummary] = {}
    papers = load_literature()

    out = [_t(lang, "title"), "", _t(lang, "intro"), ""]
    for series in ("transformer", "cv"):
        out += [_t(lang, f"series_{series}"), "", _literature_table(papers, series, rows, lang, cache), ""]
    suites = sorted({str(r.get("suite")) for r in rows if r.get("suite") is not None}, key=_natural)
    if not suites:
        out += [_t(lang, "no_results", path=results_dir.as_posix()), ""]
    for suite in suites:
        out += _suite_section(rows, suite, lang, fig_dir, figures)
    out += _provenance(rows, skipped, n_files, lang)

    keep = set(figures)
    for old in sorted(fig_dir.glob("*.png")):
        if old.name not in keep:
            old.unlink()
    path = report_dir / "tables.md"
    path.write_text("\n".join(out).rstrip("\n") + "\n", encoding="utf-8", newline="\n")
    return path
