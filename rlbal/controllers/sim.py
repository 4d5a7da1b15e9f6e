"""Simulation harness: the real `Controllers` (and optionally the real `GroupFilter`) on synthetic prompts with
known success probabilities, in the driver's order, on CPU in seconds.

Each synthetic prompt i has a per-response success probability p_i. A step fills its batch the way the
training loop does: draw prompts (uniformly without replacement, or by class with Prompt-GDRO's sampling
form), `decide` -> counts, draw n_correct ~ Binomial(count, p), let the filter keep groups (one round when
no filter), repeat until the batch is full, then `observe` every generated group with the trained ones
marked. With `learn_rate > 0` a trained group with a non-zero advantage nudges its prompt's p up
(logit += learn_rate), so what a controller spends compute on changes what the pool learns.

    >>> prompts = SyntheticPrompts.at_bin_centres(per_bin=4, edges=np.array([0.5]), n_ref=4)
    >>> prompts.pass_at(4).round(2).tolist()
    [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]
    >>> sim = Simulator(prompts, Controllers.from_configs(ClassifierConfig(num_bins=2)), SimConfig(batch_size=8))
    >>> trace = sim.run(3)
    >>> trace.counts_G.shape, int(trace.counts_G.sum()), trace.informative_frac() <= 1
    ((24,), 96, True)

`python -m rlbal.controllers.sim` prints the allocator table of docs/controllers.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rlbal.controllers.classifier import ClassifierConfig, bin_of
from rlbal.controllers.composite import Controllers
from rlbal.controllers.filtering import FilterConfig, GroupFilter
from rlbal.controllers.records import REWARD_SIGNALS, PromptResult, reward_signal, rng_from_state, rng_state
from rlbal.controllers.rollout_gdro import RolloutGDROConfig

BANDS: tuple[tuple[str, float, float], ...] = (
    ("p=0", 0.0, 0.0),
    ("(0,.2)", 0.0, 0.2),
    ("[.2,.8]", 0.2, 0.8),
    ("(.8,1)", 0.8, 1.0),
    ("p=1", 1.0, 1.0),
)


@dataclass(frozen=True)
class SyntheticPrompts:
    """p_P: (P,) per-response success probability of each synthetic prompt (its id is its index)."""

    p_P: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.p_P, np.float64)
        if p.ndim != 1 or p.size == 0 or p.min() < 0 or p.max() > 1:
            raise ValueError("SyntheticPrompts.p_P must be a non-empty 1-D array of probabilities in [0, 1]")
        object.__setattr__(self, "p_P", p)

    @classmethod
    def at_bin_centres(cls, per_bin: int, edges: np.ndarray, n_ref: int) -> SyntheticPrompts:
        """per_bin prompts per bin whose pass@n_ref sits at the bin's centre (so its true bin is unambiguous)."""
        bounds = np.concatenate([[0.0], edges, [1.0]])
        centre_B = (bounds[:-1] + bounds[1:]) / 2
        pass_P = np.repeat(centre_B, per_bin)
        return cls(1.0 - (1.0 - pass_P) ** (1.0 / n_ref))  # invert pass@n = 1 - (1 - p)^n

    @classmethod
    def mixture(cls, num: int, never: float, always: float, a: float, b: float, seed: int = 0) -> SyntheticPrompts:
        """A pool like a real RLVR set: a share `never` solved (p = 0), a share `always` solved (p = 1), the rest
        p ~ Beta(a, b)."""
        rng = np.random.default_rng(seed)
        k0, k1 = int(round(num * never)), int(round(num * always))
        p = np.concatenate([np.zeros(k0), np.ones(k1), rng.beta(a, b, num - k0 - k1)])
        return cls(p[rng.permutation(num)])

    def __len__(self) -> int:
        return int(self.p_P.size)

    def pass_at(self, n: int) -> np.ndarray:
        """(P,) probability that at least one of n rollouts is correct."""
        return 1.0 - (1.0 - self.p_P) ** n

    def true_bins(self, edges: np.ndarray, n: int) -> np.ndarray:
        """(P,) bin of the exact pass@n: where a classifier fed n rollouts per visit should converge."""
        return bin_of(self.pass_at(n), edges)

    def bands(self) -> np.ndarray:
        """(P,) index into BANDS of each prompt's true p."""
        p = self.p_P
        return np.select([p == 0, p < 0.2, p <= 0.8, p < 1], [0, 1, 2, 3], 4)


@dataclass(frozen=True)
class SimConfig:
    """One simulated run."""

    batch_size: int = 64
    """Prompts per step in the trained batch (drawn uniformly without replacement, or by Prompt-GDRO's sampler)."""
    signal: str = "failure_rate"
    """Reward-derived loss signal fed to Prompt-GDRO (one of records.REWARD_SIGNALS)."""
    signal_scale: float = 1.0
    """Multiplier on the signal (sets how sharp the exponential weights are for a given eta)."""
    filter: FilterConfig | None = None
    """Online difficulty filtering with refill (None: every drawn group is trained)."""
    learn_rate: float = 0.0
    """Logit step of a prompt's p after a trained group with a non-zero advantage (0 = a static pool)."""
    seed: int = 0
    """Seed of the simulator's RNG (batches and Bernoulli outcomes)."""

    def __post_init__(self) -> None:
        if self.signal not in REWARD_SIGNALS:
            raise ValueError(f"SimConfig.signal must be one of {REWARD_SIGNALS}, got {self.signal!r}")
        if self.batch_size < 1:
            raise ValueError(f"SimConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.learn_rate < 0:
            raise ValueError(f"SimConfig.learn_rate must be >= 0, got {self.learn_rate}")


@dataclass(frozen=True)
class SimTrace:
    """Every generated group of S steps (flat, G rows) and per-step controller state.

    step_G, ids_G, bins_G, counts_G, correct_G: (G,) int64; weights_G: (G,) float64 (multipliers of trained
    groups, 0 for dropped ones); trained_G: (G,) bool; band_G: (G,) true-difficulty band (index into BANDS) at
    generation time. mu_S, delta_S: (S,) Rollout-GDRO price and mean |change| of per-class counts (nan
    without it). q_SC: (S, C) Prompt-GDRO distribution after the step (nan without it).
    """

    step_G: np.ndarray
    ids_G: np.ndarray
    bins_G: np.ndarray
    counts_G: np.ndarray
    correct_G: np.ndarray
    weights_G: np.ndarray
    trained_G: np.ndarray
    band_G: np.ndarray
    mu_S: np.ndarray
    delta_S: np.ndarray
    q_SC: np.ndarray

    def informative_G(self) -> np.ndarray:
        """(G,) whether the group has a non-zero advantage (some but not all rollouts correct)."""
        return (self.correct_G > 0) & (self.correct_G < self.counts_G)

    def informative_frac(self, start: int = 0) -> float:
        """Share of generated rollouts (steps >= start) that sit in groups with a non-zero advantage."""
        m = self.step_G >= start
        return float((self.counts_G * self.informative_G())[m].sum() / max(self.counts_G[m].sum(), 1))

    def budget_share_by_band(self, start: int = 0) -> np.ndarray:
        """(len(BANDS),) share of generated rollouts spent on each true-difficulty band (steps >= start)."""
        m = self.step_G >= start
        spent = np.bincount(self.band_G[m], self.counts_G[m], minlength=len(BANDS))
        return spent / max(spent.sum(), 1)

    def mean_count_per_bin(self, num_classes: int, start: int = 0) -> np.ndarray:
        """(C,) mean rollouts per prompt of each class over steps >= start (nan for classes never allocated)."""
        m = self.step_G >= start
        cnt = np.bincount(self.bins_G[m], minlength=num_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(self.bins_G[m], self.counts_G[m], minlength=num_classes) / cnt


class Simulator:
    """Drives a `Controllers` object on synthetic prompts; its RNG and pool are part of its state_dict."""

    def __init__(self, prompts: SyntheticPrompts, controllers: Controllers, config: SimConfig = SimConfig()) -> None:
        if config.batch_size > len(prompts):
            raise ValueError(f"SimConfig.batch_size={config.batch_size} exceeds the {len(prompts)} prompts")
        self.p_P = prompts.p_P.copy()
        self.controllers, self.config = controllers, config
        self.filter = GroupFilter(config.filter) if config.filter is not None else None
        self.rng = np.random.default_rng(config.seed)

    def _draw(self, k: int) -> np.ndarray:
        if self.controllers.sampler is not None:
            return self.controllers.sample(k)
        return self.rng.choice(self.p_P.size, size=min(k, self.p_P.size), replace=False)

    def step(self) -> dict[str, np.ndarray]:
        """One filled batch: decide -> Bernoulli rollouts -> filter (rounds) -> observe. Returns the step's rows."""
        cols: dict[str, list] = {k: [] for k in ("ids", "bins", "counts", "correct", "trained", "band")}
        fill = self.filter.start(self.config.batch_size) if self.filter is not None else None
        while True:
            ids_N = self._draw(fill.request_size() if fill is not None else self.config.batch_size)
            alloc = self.controllers.decide(ids_N)
            k_N = self.rng.binomial(alloc.counts, self.p_P[ids_N])
            band_N = SyntheticPrompts(self.p_P[ids_N]).bands()
            if fill is None:
                trained_N = np.ones(ids_N.size, bool)
            else:
                scores_R = np.concatenate([np.r_[np.ones(k), np.zeros(n - k)] for k, n in zip(k_N, alloc.counts)])
                trained_N = np.zeros(ids_N.size, bool)
                trained_N[fill.add(ids_N.tolist(), scores_R, alloc.counts)] = True
            for key, val in zip(cols, (ids_N, alloc.bins, alloc.counts, k_N, trained_N, band_N)):
                cols[key].append(val)
            if fill is None or fill.done:
                break
        if fill is not None:
            fill.result()
        rows = {k: np.concatenate(v) for k, v in cols.items()}
        n_G, k_G, t_G = rows["counts"], rows["correct"], rows["trained"]
        weights_G = np.zeros(n_G.size)
        weights_G[t_G] = self.controllers.batch_weights(rows["bins"][t_G], n_G[t_G])
        var_G = k_G * (n_G - k_G) / (n_G * np.maximum(n_G - 1, 1))  # unbiased variance of 0/1 rewards
        signal_G = self.config.signal_scale * reward_signal(self.config.signal, k_G, n_G, k_G / n_G, var_G)
        self.controllers.observe(PromptResult(rows["ids"], rows["bins"], n_G, k_G, k_G / n_G, signal_G, t_G))
        if self.config.learn_rate > 0:
            learned = rows["ids"][t_G & (k_G > 0) & (k_G < n_G)]
            logit = np.log(self.p_P[learned]) - np.log1p(-self.p_P[learned])
            self.p_P[learned] = 1.0 / (1.0 + np.exp(-(logit + self.config.learn_rate)))
        rows["weights"] = weights_G
        return rows

    def run(self, steps: int) -> SimTrace:
        """`steps` steps, flattened into a trace."""
        ro, pg = self.controllers.rollout, self.controllers.prompt_gdro
        no_q = np.full(self.controllers.classifier.num_classes, np.nan)
        groups, mu, delta, q = [], [], [], []
        for s in range(steps):
            rows = self.step()
            rows["step"] = np.full(rows["ids"].size, s)
            groups.append(rows)
            m = ro.metrics() if ro is not None else {}
            mu.append(m.get("controller/rollout_gdro/dual_mu", np.nan))
            delta.append(m.get("controller/rollout_gdro/alloc/delta", np.nan))
            q.append(no_q if pg is None else pg.distribution())
        flat = {k: np.concatenate([g[k] for g in groups]) for k in groups[0]}
        return SimTrace(
            flat["step"],
            flat["ids"],
            flat["bins"],
            flat["counts"],
            flat["correct"],
            flat["weights"],
            flat["trained"],
            flat["band"],
            np.asarray(mu),
            np.asarray(delta),
            np.asarray(q),
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "simulator",
            "rng": rng_state(self.rng),
            "p": self.p_P.tolist(),
            "controllers": self.controllers.state_dict(),
            "filter": self.filter.state_dict() if self.filter is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "simulator":
            raise ValueError(f"expected a 'simulator' checkpoint, got kind={state.get('kind')!r}")
        self.rng = rng_from_state(state["rng"])
        self.p_P = np.asarray(state["p"], np.float64)
        self.controllers.load_state_dict(state["controllers"])
        if self.filter is not None:
            self.filter.load_state_dict(state["filter"])


# ---- the allocator table ------------------------------------------------------------------------------


def allocator_table(
    prompts: SyntheticPrompts,
    *,
    classifier: ClassifierConfig,
    n_bar: int,
    n_max: int,
    steps: int,
    batch_size: int,
    seeds=(0, 1, 2),
    filter: FilterConfig | None = None,
    learn_rate: float = 0.0,
    warmup: int = 0,
) -> list[dict[str, Any]]:
    """One row per allocator (uniform, bandit, sqrt, knapsack), each averaged over `seeds`: informative share of
    the rollouts, budget share per true band, mean |change| of per-class counts per step, final price, and
    (with learning) the pool's mean p at the end. Steps before `warmup` are left out of the averages."""
    rows = []
    for name in ("uniform", "bandit", "sqrt", "knapsack"):
        stats = []
        for seed in seeds:
            ro = None if name == "uniform" else RolloutGDROConfig(allocator=name, n_bar=n_bar, n_max=n_max)
            ctl = Controllers.from_configs(classifier, rollout=ro, n_rollouts=n_bar)
            sim = Simulator(
                prompts, ctl, SimConfig(batch_size=batch_size, filter=filter, learn_rate=learn_rate, seed=seed)
            )
            t = sim.run(steps)
            stats.append(
                (
                    t.informative_frac(warmup),
                    t.budget_share_by_band(warmup),
                    np.nanmean(t.delta_S[warmup:]) if ro else 0.0,
                    t.mu_S[-1] if ro else np.nan,
                    float(sim.p_P.mean()),
                )
            )
        inf, share, delta, mu, pbar = zip(*stats)
        rows.append(
            {
                "allocator": name,
                "informative": float(np.mean(inf)),
                "informative_sd": float(np.std(inf)),
                "band_share": np.mean(share, 0),
                "delta": float(np.mean(delta)),
                "mu": float(np.mean(mu)),
                "mean_p": float(np.mean(pbar)),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]], prompts: SyntheticPrompts) -> str:
    """The table as markdown (band shares next to the bands' share of the pool)."""
    pool = np.bincount(prompts.bands(), minlength=len(BANDS)) / len(prompts)
    head = (
        "| allocator | informative rollouts | "
        + " | ".join(f"budget {b[0]}" for b in BANDS)
        + " | mean abs change / step | price | mean p at end |"
    )
    lines = [
        head,
        "|" + "---|" * (len(BANDS) + 5),
        "| (pool share) | | " + " | ".join(f"{v:.3f}" for v in pool) + " | | | |",
    ]
    for r in rows:
        lines.append(
            f"| {r['allocator']} | {r['informative']:.3f} ± {r['informative_sd']:.3f} | "
            + " | ".join(f"{v:.3f}" for v in r["band_share"])
            + f" | {r['delta']:.3f} | {r['mu']:.3g} | {r['mean_p']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """The docs table: a realistic pool, static and learning, without and with a [0.2, 0.8] band filter."""
    prompts = SyntheticPrompts.mixture(2000, never=0.25, always=0.15, a=0.6, b=0.6, seed=0)
    clf = ClassifierConfig(num_bins=5, window=50, hysteresis=0.03)
    settings = (
        ("static pool", {}),
        ("learning pool (learn_rate 0.3)", {"learn_rate": 0.3}),
        ("band filter [0.2, 0.8]", {"filter": FilterConfig()}),
    )
    for title, kw in settings:
        rows = allocator_table(prompts, classifier=clf, n_bar=8, n_max=16, steps=300, batch_size=64, warmup=50, **kw)
        print(
            f"\n{title}: 2000 prompts (25% p=0, 15% p=1, 60% p~Beta(.6,.6)), 64 prompts x 8 rollouts, "
            f"5 bins, 300 steps (first 50 left out), 3 seeds\n"
        )
        print(format_table(rows, prompts))


if __name__ == "__main__":
    main()
