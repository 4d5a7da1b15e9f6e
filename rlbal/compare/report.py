"""The comparison's report: OUT/report.md (tables with 95 % intervals, paired differences to GRPO, efficiency,
the honesty checks) and OUT/plots/*.png (held-out curve against generated tokens and wall time, bin shares
over time, budget vs data share per bin, Prompt-GDRO's weight-vs-data lead-lag, bin migration)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlbal.compare.runner import Plan
from rlbal.compare.stats import Estimate, estimate, paired

BASELINE = "grpo"


@dataclass
class RunData:
    """What one finished run left: per-step metrics and the held-out scores of its final policy."""

    method: str
    seed: int
    rows: list[dict[str, Any]]  # training rows of metrics.jsonl (eval rows merged by step)
    heldout: dict[str, Any] | None
    fingerprint: str | None = None
    model: str | None = None
    migration: np.ndarray | None = None  # (C, C) prompts per (bin at the first checkpoint, bin at the last)
    class_names: list[str] = field(default_factory=list)

    def total(self, key: str) -> float:
        return float(sum(r.get(key, 0.0) for r in self.rows if r["step"] > 0))

    def mean(self, key: str) -> float:
        vals = [r[key] for r in self.rows if r["step"] > 0 and key in r]
        return float(np.mean(vals)) if vals else float("nan")


def load_run(plan: Plan, method: str, seed: int) -> RunData:
    run = plan.run_dir(method, seed)
    rows: dict[int, dict[str, Any]] = {}
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            r = json.loads(line)
            rows.setdefault(int(r["step"]), {}).update(r)
    held = plan.heldout(method, seed)
    scored = json.loads(held.read_text()) if held.is_file() else None
    data = RunData(method, seed, [rows[s] for s in sorted(rows)], scored)
    cfg = run / "config.yaml"
    if cfg.is_file():
        import yaml

        data.model = yaml.safe_load(cfg.read_text())["model"]["path"]
    ckpts = sorted(
        (run / "checkpoints").glob("step_*/trainer_state.json"), key=lambda p: int(p.parent.name.removeprefix("step_"))
    )
    if ckpts:
        last = json.loads(ckpts[-1].read_text())
        data.fingerprint = last.get("data_fingerprint")
        if len(ckpts) > 1:
            data.migration, data.class_names = migration(json.loads(ckpts[0].read_text()), last)
    return data


def migration(first: dict[str, Any], last: dict[str, Any]) -> tuple[np.ndarray | None, list[str]]:
    """(C, C) prompts tracked at both checkpoints, by bin at the first and bin at the last (classifier states)."""
    from rlbal.controllers import ClassifierConfig, DifficultyClassifier

    states = [s["controllers"]["components"]["classifier"] for s in (first, last)]
    cfg = ClassifierConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in states[0]["identity"]["config"].items()}
    )
    clfs = []
    for st in states:
        c = DifficultyClassifier(cfg)
        c.load_state_dict(st)
        clfs.append(c)
    ids = np.arange(int(states[0]["high"]))
    seen = ~np.isnan(clfs[0].estimate(ids)) & ~np.isnan(clfs[1].estimate(ids))
    a, b = (c.classify(ids[seen], record=False) for c in clfs)
    C = clfs[0].num_classes
    return np.bincount(a * C + b, minlength=C * C).reshape(C, C), list(clfs[0].class_names)


# ---- per-prompt values of the held-out scores -------------------------------------------------------------


def prompt_values(h: dict[str, Any], metric: str, level: float | None = None) -> np.ndarray:
    """(N,) per-prompt 'pass@1' (c/k, = mean@k), 'pass@k' (some sample correct) or 'greedy' (0/1)."""
    c = np.asarray(h["correct"], np.float64)
    lv = np.asarray(h["level"], np.float64)
    m = np.ones(c.size, bool) if level is None else lv == level
    if metric == "pass@1":
        v = c / h["k"]
    elif metric == "pass@k":
        v = (c > 0).astype(np.float64)
    else:
        v = np.asarray(h["greedy"], np.float64)
    return v[m]


def scores(runs: list[RunData], method: str, metric: str, level: float | None = None) -> dict[int, np.ndarray]:
    return {r.seed: prompt_values(r.heldout, metric, level) for r in runs if r.method == method and r.heldout}


@dataclass
class Tables:
    estimates: dict[tuple[str, str, float | None], Estimate]  # (method, metric, level) -> estimate
    diffs: dict[tuple[str, str, float | None], Estimate]  # paired difference to the baseline
    levels: list[float]


def tabulate(runs: list[RunData], methods: list[str], draws: int) -> Tables:
    levels = sorted({float(x) for r in runs if r.heldout for x in r.heldout["level"] if np.isfinite(x)})
    est, diff = {}, {}
    for m in methods:
        for metric in ("pass@1", "pass@k", "greedy"):
            for level in [None, *levels]:
                x = scores(runs, m, metric, level)
                if not x or any(v.size == 0 for v in x.values()):
                    continue
                est[m, metric, level] = estimate(x, draws)
                base = scores(runs, BASELINE, metric, level)
                if m != BASELINE and base:
                    try:
                        diff[m, metric, level] = estimate(paired(x, base), draws)
                    except ValueError:
                        pass
    return Tables(est, diff, levels)


# ---- the markdown ---------------------------------------------------------------------------------------


def level_label(level: float | None) -> str:
    return "all" if level is None else (f"level {int(level)}" if float(level).is_integer() else f"level {level:g}")


def accuracy_table(t: Tables, methods: list[str], k: int) -> list[str]:
    out = [
        f"| method | runs | level | pass@1 (mean@{k}) | pass@{k} | greedy pass@1 | Δ pass@1 vs GRPO | "
        f"Δ pass@{k} vs GRPO |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level in [None, *t.levels]:
        for m in methods:
            e = [t.estimates.get((m, metric, level)) for metric in ("pass@1", "pass@k", "greedy")]
            if e[0] is None:
                continue
            d = [t.diffs.get((m, metric, level)) for metric in ("pass@1", "pass@k")]
            ds = [
                "—" if x is None else f"{x.mean:+.3f} [{x.low:+.3f}, {x.high:+.3f}]{' *' * x.excludes_zero}" for x in d
            ]
            out.append(f"| {m} | {e[0].runs} | {level_label(level)} | {e[0]} | {e[1]} | {e[2]} | {ds[0]} | {ds[1]} |")
    return out


def efficiency_table(runs: list[RunData], methods: list[str]) -> list[str]:
    out = [
        "| method | rollouts / run | tokens / run | wall min / run | informative rollouts | reward / rollout |",
        "|---|---|---|---|---|---|",
    ]
    for m in methods:
        rs = [r for r in runs if r.method == m and r.rows]
        if not rs:
            continue
        rollouts, tokens, wall = (
            np.mean([r.total(key) for r in rs])
            for key in ("rollout/generated", "rollout/generated_tokens", "timing/step")
        )
        informative, reward = (
            np.mean([r.mean(key) for r in rs]) for key in ("rollout/informative_frac", "rollout/reward_per_rollout")
        )
        out.append(f"| {m} | {rollouts:.0f} | {tokens:.0f} | {wall / 60:.1f} | {informative:.3f} | {reward:.3f} |")
    return out


def checks(runs: list[RunData], plan: Plan) -> tuple[list[str], bool]:
    """The honesty checks, each a line; False when one fails."""
    lines, ok = [], True
    for seed in plan.seeds:
        rs = [r for r in runs if r.seed == seed and r.rows]
        spent = {r.method: r.total("rollout/generated") for r in rs}
        equal = len(set(spent.values())) <= 1
        ok &= equal
        verdict = (
            "equal"
            if equal
            else (
                "NOT EQUAL: compare them per rollout (a variant changed the budget, or "
                "online filtering spent what it needed to fill its batches)"
            )
        )
        lines.append(f"- seed {seed}: generated rollouts per method {spent} -> {verdict}")
        fps = {r.fingerprint for r in rs if r.fingerprint}
        models = {r.model for r in rs if r.model}
        same = len(fps) <= 1 and len(models) <= 1
        ok &= same
        lines.append(
            f"- seed {seed}: training data fingerprint {sorted(f[:12] for f in fps)}, "
            f"warm start {sorted(models)} "
            f"-> {'the same for every method' if same else 'DIFFERENT'}"
        )
        helds = [r.heldout for r in rs if r.heldout]
        if helds:
            keysets = {tuple(h["keys"]) for h in helds}
            ok &= len(keysets) == 1
            dropped = helds[0]["dropped_overlap"]
            lines.append(
                f"- seed {seed}: {len(helds[0]['keys'])} held-out prompts, the same for every method: "
                f"{'yes' if len(keysets) == 1 else 'NO'}; {sum(dropped.values())} eval prompts dropped "
                f"because their text occurs in the training data {dropped or ''}: the held-out set is "
                "disjoint from training by construction"
            )
    return lines, ok


def write_report(plan: Plan, jobs: list[Any], draws: int, machine: str, seconds: float) -> Path:
    methods = [m.name for m in plan.methods]
    runs = [load_run(plan, m, s) for m in methods for s in plan.seeds]
    t = tabulate(runs, methods, draws)
    check_lines, ok = checks(runs, plan)
    base = {s: json.loads(plan.base_heldout(s).read_text()) for s in plan.seeds if plan.base_heldout(s).is_file()}
    plots = make_plots(plan, runs, methods)
    k = plan.eval_k
    md = [
        f"# Comparison: {plan.recipe.name}",
        "",
        f"Recipe `{plan.recipe}` with overrides `{' '.join(plan.overrides) or '(none)'}`; seeds {plan.seeds}; "
        f"held-out: the eval section at {plan.eval_size} prompts per (task, level), {k} samples each "
        f"(T from eval.temperature) plus one greedy, prompts seen in training dropped.",
        f"Machine: {machine}. Wall time of this invocation (runs already scored are reused, not rerun): "
        f"{seconds / 60:.1f} min.",
        "",
        "## Held-out accuracy of the final policies",
        "",
        "Mean over seeds of the per-run mean over prompts; [95 % interval], bootstrap over seeds and over prompts "
        "within each seed. Δ = paired difference to GRPO on the same seeds and prompts; * = interval excludes 0.",
        "",
        *accuracy_table(t, methods, k),
        "",
    ]
    if base:
        b = {s: prompt_values(h, "pass@1") for s, h in base.items()}
        md += [f"Starting model (step 0) on the same prompts: pass@1 {estimate(b, draws)} over {len(b)} seeds.", ""]
    md += [
        "## Compute and efficiency",
        "",
        *efficiency_table(runs, methods),
        "",
        "Informative rollouts: share of generated rollouts in groups whose rewards are not all equal (a non-zero "
        "advantage).",
        "",
        "## Checks",
        "",
        *check_lines,
        f"- every check passed: {'yes' if ok else 'NO'}",
        "",
        "## Configurations tried",
        "",
    ]
    md += [
        f"- `{m.name}`: {m.base} + `{' '.join(m.overrides) or '(no extra overrides)'}`; run overrides "
        f"`{' '.join(m.run_overrides(plan.recipe_controllers))}`"
        for m in plan.methods
    ]
    failed = [j for j in jobs if j.failed]
    if failed:
        md += ["", "## Failed runs", "", *[f"- {j.name}: {j.failed}" for j in failed]]
    md += ["", "## Plots", "", *[f"![{p.stem}](plots/{p.name})" for p in plots], ""]
    path = plan.out / "report.md"
    path.write_text("\n".join(md))
    (plan.out / "summary.json").write_text(
        json.dumps(
            {f"{m}|{metric}|{level_label(level)}": vars(e) for (m, metric, level), e in t.estimates.items()}
            | {f"diff|{m}|{metric}|{level_label(level)}": vars(e) for (m, metric, level), e in t.diffs.items()},
            indent=1,
        )
    )
    return path


# ---- plots ----------------------------------------------------------------------------------------------


def _bins(row: dict[str, Any], prefix: str) -> dict[int, float]:
    pat = re.compile(re.escape(prefix) + r"/bin_(\d+)$")
    return {int(m.group(1)): v for key, v in row.items() if (m := pat.match(key))}


def series(run: RunData, prefix: str) -> np.ndarray:
    """(T, B) per-step values of `prefix/bin_b` (nan where absent)."""
    rows = [r for r in run.rows if r["step"] > 0]
    B = 1 + max((b for r in rows for b in _bins(r, prefix)), default=-1)
    out = np.full((len(rows), B), np.nan)
    for t, r in enumerate(rows):
        for b, v in _bins(r, prefix).items():
            out[t, b] = v
    return out


def make_plots(plan: Plan, runs: list[RunData], methods: list[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = plan.out / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    key = next((k for r in runs for row in r.rows for k in row if re.fullmatch(r"eval/mean@\d+", k)), "eval/mean@4")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m in methods:
        rs = [r for r in runs if r.method == m and r.rows]
        for ax, xkey, label in (
            (axes[0], "rollout/generated_tokens", "generated tokens"),
            (axes[1], "timing/step", "wall time (s)"),
        ):
            xs, ys = [], []
            for r in rs:  # the in-training evals, at the compute spent up to their step
                spent = np.cumsum([row.get(xkey, 0.0) for row in r.rows])
                at = [i for i, row in enumerate(r.rows) if key in row]
                xs.append(spent[at])
                ys.append([r.rows[i][key] for i in at])
            if xs and len({len(x) for x in xs}) == 1 and len(xs[0]):
                ax.plot(np.mean(xs, 0), np.mean(ys, 0), marker="o", label=m)
            ax.set_xlabel(label)
            ax.set_ylabel(f"held-out {key.split('/')[-1]} (in-training eval, mean over seeds)")
    axes[0].legend()
    fig.tight_layout()
    paths.append(_save(fig, out / "heldout_vs_compute.png"))
    for prefix, title, fname in (("controller/classifier/count", "share of the batch per bin", "bin_share"),):
        fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.5), squeeze=False)
        for ax, m in zip(axes[0], methods):
            mats = [series(r, prefix) for r in runs if r.method == m and r.rows]
            if mats and len({x.shape for x in mats}) == 1:
                mat = np.nanmean(mats, 0)
                share = mat / np.nansum(mat, 1, keepdims=True)
                ax.imshow(share.T, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
            ax.set_title(f"{m}: {title}")
            ax.set_xlabel("step")
            ax.set_ylabel("bin (0 = hardest)")
        fig.tight_layout()
        paths.append(_save(fig, out / f"{fname}.png"))
    ro = [
        m
        for m in methods
        if any("controller/rollout_gdro/budget_share/bin_0" in row for r in runs if r.method == m for row in r.rows)
    ]
    if ro:
        fig, axes = plt.subplots(1, len(ro), figsize=(4.5 * len(ro), 3.5), squeeze=False)
        for ax, m in zip(axes[0], ro):
            data = [series(r, "controller/classifier/count") for r in runs if r.method == m and r.rows]
            budget = [series(r, "controller/rollout_gdro/budget_share") for r in runs if r.method == m and r.rows]
            d = np.nanmean([x / np.nansum(x, 1, keepdims=True) for x in data], (0, 1))
            b = np.nanmean(budget, (0, 1))
            idx = np.arange(min(d.size, b.size))
            ax.bar(idx - 0.2, d[idx], 0.4, label="data share")
            ax.bar(idx + 0.2, b[idx], 0.4, label="budget share")
            ax.set_title(f"{m}: rollout budget vs data per bin")
            ax.set_xlabel("bin (0 = hardest)")
            ax.legend()
        fig.tight_layout()
        paths.append(_save(fig, out / "budget_vs_data.png"))
    pg = [
        m
        for m in methods
        if any("controller/prompt_gdro/weight/bin_0" in row for r in runs if r.method == m for row in r.rows)
    ]
    if pg:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for m in pg:
            curves = []
            for r in (r for r in runs if r.method == m and r.rows):
                data, w = series(r, "controller/classifier/count"), series(r, "controller/prompt_gdro/weight")
                B = min(data.shape[1], w.shape[1])
                data, w = np.nan_to_num(data[:, :B]), np.nan_to_num(w[:, :B])
                idx = np.arange(B)
                mu_data = (data @ idx) / np.maximum(data.sum(1), 1e-12)
                mu_w = (w @ idx) / np.maximum(w.sum(1), 1e-12)
                curves.append(mu_w - mu_data)
            if curves and len({c.size for c in curves}) == 1:
                ax.plot(np.mean(curves, 0), label=m)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("step")
        ax.set_ylabel("mean bin under weights - under data")
        ax.set_title("Prompt-GDRO lead-lag (paper Eq. 32)")
        ax.legend()
        fig.tight_layout()
        paths.append(_save(fig, out / "lead_lag.png"))
    mig = [(m, [r for r in runs if r.method == m and r.migration is not None]) for m in methods]
    mig = [(m, rs) for m, rs in mig if rs]
    if mig:
        fig, axes = plt.subplots(1, len(mig), figsize=(3.8 * len(mig), 3.5), squeeze=False)
        for ax, (m, rs) in zip(axes[0], mig):
            mat = np.sum([r.migration for r in rs], 0).astype(np.float64)
            rows = mat / np.maximum(mat.sum(1, keepdims=True), 1)
            ax.imshow(rows, cmap="magma", vmin=0, vmax=1)
            ax.set_title(f"{m}: bin migration")
            ax.set_xlabel("bin at the last checkpoint")
            ax.set_ylabel("bin at the first")
        fig.tight_layout()
        paths.append(_save(fig, out / "migration.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
