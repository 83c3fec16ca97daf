"""Every word the report prints, in English and in Chinese (the notes' own language).

``TEXT`` holds sentences and headings by key, ``LIT_HEADERS`` the literature tables' columns (the zh
headers are the notes' own), ``ABL_HEADERS`` the ablation tables' columns, ``CLAIM_HEADERS``,
``VERDICT_WORDS`` and ``EXPECT_WORDS`` the claims ledger's. Figures are labelled in
English only.
"""

from __future__ import annotations

from typing import Any

from harness.analysis.report.fmt import DASH

__all__ = ["ABL_HEADERS", "CLAIM_HEADERS", "EXPECT_WORDS", "LANGS", "LIT_HEADERS", "TEXT", "VERDICT_WORDS",
           "t"]

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "# Transformer variants: paper results and measurements",
        "intro": (
            "What was measured comes first: the claims' verdicts and each suite's headline comparison. "
            "Then the research notes' two literature tables (measured columns first, the papers' own text "
            "folded), the claims one by one, a section per suite and the provenance. Intervals are 95% "
            "Student-t intervals over seeds; differences are paired by seed."
        ),
        "lit_intro": (
            "Columns marked *(measured)* hold this harness's own runs, at the scale stated in the *Scale* "
            "column - small synthetic tasks, not the papers' datasets, so a measured number is never a "
            "reproduction of a paper number; Year to Other hold what the papers report. `n/r`: not "
            "reported or not confirmed; `(unverified)`: no readable copy of the paper confirmed the number; "
            "`—`: nothing measured here (yet)."
        ),
        "literature_none": ("None of these suites measures a paper of the research notes or tests one of "
                            "their claims, so the notes' two literature tables are left out (a report of "
                            "the repository's `results/` has them)."),
        "findings": "## Findings",
        "findings_no_claims": "No claim of `literature.yaml` bears on these suites.",
        "findings_empirical": "Claims tested on measurements ({n}): {tally}.",
        "findings_construction": ("Checks by construction: exact parameter and FLOP counts and bytes saved "
                                  "for backward ({n}): {tally}."),
        "findings_confounded": ("Compared arms that also differ in keys the claim is not about (see the "
                                "Claims section): {ids}."),
        "findings_table": ("Each suite's headline comparison, per task: the variants better or worse than "
                           "the baseline beyond seed noise (paired Δ with its 95% CI, Holm-corrected over "
                           "the suite table), and how many are within seed noise:"),
        "findings_headers": "suite / task|metric|baseline|better beyond seed noise (Δ)|"
                            "worse beyond seed noise (Δ)|within seed noise",
        "findings_all_floor": "all at the metric's floor: nothing compared",
        "findings_all_ceiling": "all at the metric's ceiling: nothing compared",
        "findings_at_bound": " (+{n} at floor or ceiling)",
        "claims_left_out": ("{n} claim(s) of `literature.yaml` bear on no suite of these results and are "
                            "left out ({untestable} of them not testable here); `harness claims` lists "
                            "every claim."),
        "vs": "vs",
        "configs": ("Resolved configs: the keys in which each variant differs from `{baseline}` (the "
                    "variant's value vs the baseline's; — where a model has no such key; `train.` keys "
                    "are training settings), then each variant's whole resolved model config:"),
        "config_variant": "variant",
        "config_model": "model",
        "config_diff": "differs from {baseline} (variant vs baseline)",
        "config_resolved": "resolved model config",
        "config_same": "nothing but the name",
        "applied_note": ("*params applied*: parameters counted at every use, so a weight shared across "
                         "layers (ALBERT, the Universal Transformer) counts once per layer; equal to "
                         "*params* where nothing is shared."),
        "series_transformer": "## Transformer series",
        "series_cv": "## Transformer in CV series",
        "suite": "## Suite: {suite}",
        "task": "### Task: {task}",
        "grid": "### Overview: {metrics} per variant and task (mean over seeds, n)",
        "profile": ("### Cost against input size ({task}; tokens, or the image side in pixels for image "
                    "tasks)"),
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
        "over_training": ("{metric} over training: mean ± 95% CI over seeds at each evaluated step (each "
                          "variant's last value is the table above; — where it did not evaluate):"),
        "fig_samples": ("Samples of each variant's trained model (its lowest seed), one row per variant, "
                        "the task's panels side by side."),
        "exp_table": "Fitted exponents k of cost ∝ seq_len^k (least squares on log-log{range}):",
        "exp_range": ", lengths {lo} to {hi}",
        "overtake": ("Length from which each variant costs less than each reference (default: the "
                     "`vanilla` variants) at every longer measured length; a reference that ran out of "
                     "memory or was skipped counts as costing more:"),
        "ratio": "Cost relative to each reference at n = {n} (variant / reference; below 1 is cheaper):",
        "never": "not up to {n}",
        "from_start": "from {n} (the shortest)",
        "matrix_note": ("Rows: how the model was trained; columns: how it was evaluated. Each cell: "
                        "{metric} mean ± 95% CI over seeds (n), then the paper's number in brackets where "
                        "it has one."),
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
        "prov_layout_missing": ("Suite `{suite}`: no suite file found (looked for {tried}), so its section "
                                "has the default layout."),
        "prov_layout_broken": ("Suite `{suite}`: its suite file `{path}` does not load, so its section has "
                               "the default layout: `{error}`"),
        "sep": ", ",
        "tokens_per_example": " ({tokens} tokens/example)",
        "memory": "memory: {kinds}",
        # budgets (harness/report/budget.py) and accuracy against cost (harness/report/pareto.py)
        "budget_held": ("Budgets held against `{baseline}` (equal within {tol}; in brackets variant / "
                        "baseline): {cells}."),
        "budget_none": "none",
        "code_same": "Code: every variant and `{baseline}` ran the same version of each file they share.",
        "code_differ": ("Code: arms of a comparison with `{baseline}` that did not run the same code "
                        "(from the rows' `code` records): {cells}."),
        "code_files": "different versions of {files}",
        "code_more": " and {n} more",
        "code_unknown": "{n} row(s) of code not known file by file (a dirty tree)",
        "code_scale": "arms ran different code",
        "budget_matched": ("`{variant}` is matched to `{to}` on {budget}: {width} = {value} gives {achieved} "
                           "against {target} ({rel}, tolerance {tol}). `{to}` − `{variant}` ({metric}, "
                           "paired by seed): {diff}, p = {p} (n={n})."),
        "pareto": ("Accuracy against cost ({metric}, mean ± 95% CI over seeds; median step time and peak "
                   "memory of a training step). *front*: no other variant is better on {metric} beyond "
                   "both intervals at no more cost on that axis; otherwise the variants that are:"),
        "pareto_front": "front",
        "pareto_beaten": "beaten by {names}",
        "pareto_vs_step": "vs step time",
        "pareto_vs_mem": "vs peak memory",
        "fig_pareto": ("{metric} (mean ± 95% CI) against step time and against peak memory; "
                       "filled markers are on the front of that axis."),
        "floor": "uninformative: all at floor ({bound})",
        "all_floor": ("Uninformative at this scale: every variant's {metric} sits at the metric's floor "
                      "({x}), so this table compares costs only (no metric figure, no accuracy against "
                      "cost)."),
        "all_ceiling": ("Uninformative at this scale: every variant's {metric} sits at the metric's ceiling "
                        "({x}), so this table compares costs only (no metric figure, no accuracy against "
                        "cost)."),
        "ceiling": "uninformative: all at ceiling ({bound})",
        "chance": "chance {x}",
        "claims": "## Claims",
        "claims_intro": (
            "What the papers claim (and the research notes' own opinions, marked *notes*), tested on the "
            "results of this report. Every verdict is computed from the result rows: *supported* or "
            "*contradicted* when the paired difference is beyond seed noise (Holm-corrected p < 0.05 over "
            "the suite table's comparisons with the same reference) in the claimed or the opposite "
            "direction (a claim with a margin, such as \"loses little\", holds its 95% interval against the "
            "margin), or a cost, count or exponent meets or misses the claim's bound; *not separable* "
            "when the interval contains zero or straddles the claim's margin (with the smallest effect "
            "the seeds could detect at 80% power, two-sided paired t at 0.05, and the seeds the observed "
            "effect would need); *uninformative* when every compared value sits at the metric's floor "
            "(zero, or chance for the task) or every one at its ceiling; *not measured* when no rows test "
            "it. *Arms also differ in*: the config keys in which the compared variants differ besides "
            "the model itself, the keys only one of them has and the keys the claim is about (its "
            "`about:` list), each a confound of the comparison. Durability: the same paired test at about "
            "half the training steps and at the end. The scale is this harness's (small CPU runs), never "
            "the papers'."
        ),
        "claims_none": "No claims in `literature.yaml`.",
        "claims_tally": "Verdicts: {tally}.",
        "claims_early": ("Beyond seed noise at about half the training steps but not at the end "
                         "(early-training effects, as far as these seeds show): {ids}."),
        "by_paper": "paper",
        "by_code": "official code",
        "by_notes": "notes",
        "ev_diff": "Δ {metric} ({label}) = {diff} ({conf}% interval; n={n}, {p}; P(A > B) over seeds {sup})",
        "ev_p": "t-test p={p}, sign-flip p={perm}",
        "ev_p_holm": "t-test p_Holm={p}, sign-flip p_Holm={perm} over the ledger's {k} tests",
        "ev_p_level": "t-test p={p}, sign-flip p={perm}; judged at level {level} (the ledger's {k} tests)",
        "ev_shared": "the same test as {claims}",
        "ev_means": "means: {means}",
        "ev_drops": "mean drop from {high} to {low}: {means}",
        "ev_detect": ("the seeds could detect ±{mde} at 80% power; the observed effect would need {seeds} "
                      "seed(s)"),
        "ev_detect_never": "the seeds could detect ±{mde} at 80% power; the observed effect is too small to "
                           "reach with any practical number of seeds",
        "ev_nothing_floor": "an arm learned nothing, so nothing was compared",
        "ev_nothing_ceiling": "everything was learned, so nothing was compared",
        "ev_no_rows": "no result rows test it yet (suite `{suite}`)",
        "ev_no_test": "not testable here: {needs}",
        "ev_ratio": "{quantity} at n={at}: {variant} / {ref} = {ratio}",
        "ev_ratio_failed": "{quantity} at n={at}: `{ref}` did not run (out of memory or skipped)",
        "ev_holds": "holds against {refs}",
        "ev_not_holds": "not against {refs}",
        "ev_bound_below": "claim: below {x}",
        "ev_exponent": "k({quantity}) = {k} over {lo}–{hi} ({points} sizes); claim: {bound}",
        "ev_count": "{quantity}: {value} vs {ref} ({expect}: {verdict})",
        "ev_count_about": "{quantity}: {value} vs the printed {ref} (±{tol}: {verdict})",
        "ev_yes": "holds",
        "ev_no": "does not hold",
        "dur": "{trend}: Δ {mid} at step {step}, {end} at the end",
        "dur_early": "; looks like an early-training effect",
        "growing": "growing",
        "stable": "stable",
        "shrinking": "shrinking",
        "section_link": "[section]({anchor})",
    },
    "zh": {
        "title": "# Transformer 变体：论文结果与实测",
        "intro": (
            "先给出实测得到的结论：各论断的结论统计与每个实验套件的主要比较。"
            "随后是研究笔记的两张文献表（实测列在前，论文自己的文字折叠）、逐条论断、每个套件一节以及来源信息。"
            "区间为各随机种子上的 95% Student-t 置信区间；差值按种子配对。"
        ),
        "lit_intro": (
            "标有“实测”的列是本项目自己的运行结果，其规模写在“实测规模”一列中：小规模合成任务，"
            "而不是论文中的数据集，因此实测数字不是对论文数字的复现；从“时间”到“其它”的各列是论文报告的内容。"
            "`n/r`：论文未报告或未核实；`(unverified)`：没有可读的论文原文确认该数字；`—`：本项目（尚）未测量。"
        ),
        "literature_none": ("这些套件既不测量研究笔记中的论文，也不检验其论断，因此略去笔记的两张文献表"
                            "（用仓库的 `results/` 生成的报告中有）。"),
        "findings": "## 结论",
        "findings_no_claims": "`literature.yaml` 中没有与这些套件相关的论断。",
        "findings_empirical": "基于实测检验的论断（{n} 条）：{tally}。",
        "findings_construction": ("由结构决定的检查，即精确的参数量、FLOPs 计数与反向所存字节数"
                                  "（{n} 条）：{tally}。"),
        "findings_confounded": "比较的两组还在论断未涉及的键上不同（见“论断”一节）：{ids}。",
        "findings_table": ("每个实验套件按任务的主要比较：超出种子噪声地优于或劣于基线的变体"
                           "（配对差值及其 95% 置信区间，对套件表做 Holm 校正），"
                           "以及在种子噪声范围内的变体数："),
        "findings_headers": ("套件 / 任务|指标|基线|超出种子噪声地更好（Δ）|超出种子噪声地更差（Δ）|"
                             "在种子噪声范围内"),
        "findings_all_floor": "全部处于指标下限：没有比较",
        "findings_all_ceiling": "全部处于指标上限：没有比较",
        "findings_at_bound": "（另有 {n} 个处于下限或上限）",
        "claims_left_out": ("`literature.yaml` 中有 {n} 条论断与这些结果中的套件无关，已略去"
                            "（其中 {untestable} 条本项目无法检验）；`harness claims` 列出全部论断。"),
        "vs": "对",
        "configs": ("解析后的配置：各变体与 `{baseline}` 不同的键（变体的值对基线的值；"
                    "— 表示该模型没有这个键；`train.` 开头的是训练设置），以及各变体完整的模型配置："),
        "config_variant": "变体",
        "config_model": "模型",
        "config_diff": "与 {baseline} 的不同（变体对基线）",
        "config_resolved": "解析后的模型配置",
        "config_same": "仅名称不同",
        "applied_note": ("*应用参数量*：每次使用都计数的参数量，跨层共享的权重"
                         "（ALBERT、Universal Transformer）每层计一次；没有共享时与*参数量*相等。"),
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
        "over_training": ("{metric} 在训练过程中的变化：各评估步上跨随机种子的均值 ± 95% 置信区间"
                          "（各变体的最后一个值即上表；— 表示该步未评估）："),
        "fig_samples": "各变体训练后模型的样本（取其最小的随机种子），每个变体一行，任务的各面板并排。",
        "exp_table": "拟合指数 k（开销 ∝ seq_len^k，双对数最小二乘{range}）：",
        "exp_range": "，长度 {lo} 至 {hi}",
        "overtake": ("各变体从哪个长度起（且在所有更长的实测长度上）开销低于各参照模型（`vanilla`）；"
                     "参照模型内存不足或被跳过的长度算作参照更贵："),
        "ratio": "n = {n} 时相对各参照模型的开销（变体 / 参照；小于 1 表示更省）：",
        "never": "至 {n} 未超过",
        "from_start": "自 {n}（最短长度）起",
        "matrix_note": ("行：训练方式；列：评估方式。每格为 {metric} 的种子均值 ± 95% 置信区间（n），"
                        "方括号内为论文数字（如有）。"),
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
        "prov_layout_missing": "套件 `{suite}`：未找到套件文件（查找了 {tried}），其章节使用默认布局。",
        "prov_layout_broken": "套件 `{suite}`：套件文件 `{path}` 无法加载，其章节使用默认布局：`{error}`",
        "sep": "，",
        "tokens_per_example": "（每样本 {tokens} tokens）",
        "memory": "内存口径 {kinds}",
        "budget_held": ("相对 `{baseline}` 保持相同的预算（相差不超过 {tol}；括号内为变体 / 基线之比）："
                        "{cells}。"),
        "budget_none": "无",
        "code_same": "代码：各变体与 `{baseline}` 共用的每个文件版本都相同。",
        "code_differ": "代码：与 `{baseline}` 比较时两组所用代码不同（依据各行的 `code` 记录）：{cells}。",
        "code_files": "{files} 的版本不同",
        "code_more": " 等另外 {n} 个文件",
        "code_unknown": "{n} 行的代码无法逐文件确认（工作区有未提交的修改）",
        "code_scale": "两组所用代码不同",
        "budget_matched": ("`{variant}` 按 {budget} 与 `{to}` 对齐：{width} = {value} 得到 {achieved}，"
                           "目标为 {target}（{rel}，容差 {tol}）。"
                           "`{to}` − `{variant}`（{metric}，按种子配对）：{diff}，p = {p}（n={n}）。"),
        "pareto": ("精度与开销（{metric} 为种子均值 ± 95% 置信区间；训练步的中位步时与峰值内存）。"
                   "*前沿*：没有其它变体在开销不更高的同时在 {metric} 上超出两者的置信区间；"
                   "否则列出胜过它的变体："),
        "pareto_front": "前沿",
        "pareto_beaten": "被 {names} 胜过",
        "pareto_vs_step": "对步时",
        "pareto_vs_mem": "对峰值内存",
        "fig_pareto": ("{metric}（均值 ± 95% 置信区间）对步时与峰值内存；"
                       "实心点为该坐标轴上的前沿。"),
        "floor": "无信息：全部处于下限（{bound}）",
        "all_floor": ("在此规模下无信息：所有变体的 {metric} 都处于指标下限（{x}），"
                      "本表只比较开销（不画指标图与精度-开销图）。"),
        "all_ceiling": ("在此规模下无信息：所有变体的 {metric} 都处于指标上限（{x}），"
                        "本表只比较开销（不画指标图与精度-开销图）。"),
        "ceiling": "无信息：全部处于上限（{bound}）",
        "chance": "随机水平 {x}",
        "claims": "## 论断",
        "claims_intro": (
            "论文的论断（以及研究笔记自己的看法，标为“笔记”）在本报告的结果上的检验。每个结"
            "论都由结果行计算得出：配对差值超出种子噪声（对同一参照的套件表内比较做 Holm"
            " 校正后 p < 0.05）且方向与论断相同或相反时为“支持”或“相反”（带容差"
            "的论断，如“只损失很少”，以 95% 置信区间对照容差），开销、计数与指数类论断"
            "则看是否满足其界限；置信区间包含零或跨越论断的容差时为“无法区分”（并给出这些种"
            "子在 80% 功效、双侧配对 t 检验 0.05 水平下可检测的最小效应，以及观"
            "测到的效应所需的种子数）；所有比较值都处于指标下限（零或该任务的随机水平）或全部"
            "处于上限时为“无信息”；没有结果时为“未测量”。随训练的变化：在约一半训练步数处"
            "与结束时做同样的配对检验。“两组的其它差异”：比较的两个变体除模型本身、只有一方才有的键"
            "以及论断所涉及的键（其 `about:` 列表）之外还不同的配置键，每一个都是该比较的混杂因素。"
            "规模为本项目的（小规模 CPU 运行），而非论文的规模"
            "。"
        ),
        "claims_none": "`literature.yaml` 中没有论断。",
        "claims_tally": "结论统计：{tally}。",
        "claims_early": ("在约一半训练步数处超出种子噪声、结束时却没有"
                         "（就这些种子而言，是训练早期的效应）：{ids}。"),
        "by_paper": "论文",
        "by_code": "官方代码",
        "by_notes": "笔记",
        "ev_diff": "Δ {metric}（{label}）= {diff}（{conf}% 区间；n={n}，{p}；各种子上 P(A > B) 为 {sup}）",
        "ev_p": "t 检验 p={p}，符号翻转 p={perm}",
        "ev_p_holm": "t 检验 p_Holm={p}，符号翻转 p_Holm={perm}（全账本 {k} 个检验）",
        "ev_p_level": "t 检验 p={p}，符号翻转 p={perm}；以 {level} 水平判定（全账本 {k} 个检验）",
        "ev_shared": "与 {claims} 是同一检验",
        "ev_means": "均值：{means}",
        "ev_drops": "从 {high} 到 {low} 的平均下降：{means}",
        "ev_detect": "这些种子在 80% 功效下可检测 ±{mde}；观测到的效应需要 {seeds} 个种子",
        "ev_detect_never": "这些种子在 80% 功效下可检测 ±{mde}；观测到的效应太小，实际可行的种子数都无法检出",
        "ev_nothing_floor": "有一方什么都没学到，因此没有比较任何东西",
        "ev_nothing_ceiling": "全部都已学会，因此没有比较任何东西",
        "ev_no_rows": "尚无检验它的结果（套件 `{suite}`）",
        "ev_no_test": "本项目无法检验：{needs}",
        "ev_ratio": "n={at} 时的 {quantity}：{variant} / {ref} = {ratio}",
        "ev_ratio_failed": "n={at} 时的 {quantity}：`{ref}` 未能运行（内存不足或被跳过）",
        "ev_holds": "相对 {refs} 成立",
        "ev_not_holds": "相对 {refs} 不成立",
        "ev_bound_below": "论断：低于 {x}",
        "ev_exponent": "k({quantity}) = {k}（{lo}–{hi}，{points} 个规模）；论断：{bound}",
        "ev_count": "{quantity}：{value} 对 {ref}（{expect}：{verdict}）",
        "ev_count_about": "{quantity}：{value} 对论文的 {ref}（±{tol}：{verdict}）",
        "ev_yes": "成立",
        "ev_no": "不成立",
        "dur": "{trend}：第 {step} 步 Δ {mid}，结束时 {end}",
        "dur_early": "；像是训练早期的效应",
        "growing": "在扩大",
        "stable": "稳定",
        "shrinking": "在缩小",
        "section_link": "[章节]({anchor})",
    },
}

LIT_HEADERS: dict[str, list[str]] = {
    "en": ["Title", "Headline metric, mean ± 95% CI (measured)", "Δ vs vanilla baseline, paired (measured)",
           "Claims: verdicts (measured)", "Scale (measured)", "Params (measured)",
           "GFLOPs/example (measured)", "Peak memory (measured)", "Throughput, tokens/s (measured)", "Year",
           "Venue", "Problem", "Method", "Result", "Training details", "Other"],
    "zh": ["题目", "实测主要指标（均值 ± 95% CI）", "实测相对 vanilla 基线的变化（配对）", "论断：实测结论",
           "实测规模", "实测参数量", "实测 GFLOPs/样本", "实测峰值内存", "实测吞吐（tokens/s）",
           "时间", "会议", "想解决的问题", "使用的方法", "结果", "训练细节", "其它"],
}

ABL_HEADERS: dict[str, dict[str, str]] = {
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


VERDICT_WORDS: dict[str, dict[str, str]] = {
    "en": {"supported": "supported", "contradicted": "contradicted", "not separable": "not separable",
           "uninformative": "uninformative", "not measured": "not measured"},
    "zh": {"supported": "支持", "contradicted": "相反", "not separable": "无法区分",
           "uninformative": "无信息", "not measured": "未测量"},
}

CLAIM_HEADERS: dict[str, list[str]] = {
    "en": ["claim", "paper", "by, source", "verdict", "arms also differ in", "evidence", "durability",
           "scale"],
    "zh": ["论断", "论文", "出处", "结论", "两组的其它差异", "证据", "随训练的变化", "规模"],
}

EXPECT_WORDS: dict[str, dict[str, str]] = {
    "en": {"less": "less", "equal": "equal", "greater": "greater", "about": "about"},
    "zh": {"less": "更少", "equal": "相等", "greater": "更多", "about": "约等于"},
}

LANGS = tuple(TEXT)


def t(lang: str, key: str, **kw: Any) -> str:
    """The text ``key`` in ``lang``, formatted with ``kw``."""
    return TEXT[lang][key].format(**kw)
