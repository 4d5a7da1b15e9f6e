"""Per-step cost of the controllers and bytes per tracked prompt.

    python benchmarks/bench_controllers.py            # full table (~1 minute on 2 cores)
    python benchmarks/bench_controllers.py --steps 50 # quicker

One step = `Controllers.decide(ids)` (classify -> Rollout-GDRO allocation -> Prompt-GDRO weights) plus
`Controllers.observe(result)` (Prompt-GDRO scores, Rollout-GDRO arms / dual / variances, pass@k history),
for a batch of N prompts drawn from T tracked prompts, 2..12 rollouts each (budget 4 per prompt), window
H = 50, 10 bins. Simulating the rollouts and building the PromptResult are the trainer's work and are not
timed; `metrics()` is timed separately. Wall times on a shared machine include preemption by other
processes; "cpu ms" is this thread's CPU time for the same step (median). Bytes per prompt = the classifier's
array bytes / capacity (slots, grown by doubling) and / tracked prompts. Reference point (algorithms.md 1.5, the
released code on a 2-core CPU): Prompt-GDRO ~7 ms, Rollout-GDRO 38 ms median (p90 250-370 ms), ~950 bytes per
tracked prompt.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlbal.controllers import ClassifierConfig, Controllers, PromptGDROConfig, PromptResult, RolloutGDROConfig


def build(tracked: int, allocator: str, rng: np.random.Generator) -> Controllers:
    """Controllers whose classifier already tracks `tracked` prompts with 1-3 observations each."""
    ctl = Controllers.from_configs(
        ClassifierConfig(window=50, hysteresis=0.03), PromptGDROConfig(), RolloutGDROConfig(allocator=allocator)
    )
    p_T = rng.beta(0.7, 0.7, tracked)  # spread of difficulties: every bin populated
    for rounds in range(3):
        ids = np.arange(tracked) if rounds == 0 else rng.choice(tracked, tracked // 2, replace=False)
        for chunk in np.array_split(ids, max(1, ids.size // 65536)):
            ctl.classifier.update(chunk, rng.random(chunk.size) < 1 - (1 - p_T[chunk]) ** 4)
    return ctl


def one_step(ctl: Controllers, ids: np.ndarray, p_T: np.ndarray, rng: np.random.Generator) -> tuple[float, ...]:
    """(decide wall s, observe wall s, decide + observe CPU s of this thread)."""
    c0, t0 = time.thread_time(), time.perf_counter()
    alloc = ctl.decide(ids)
    c1, t1 = time.thread_time(), time.perf_counter()
    k = rng.binomial(alloc.counts, p_T[ids])  # the trainer's part: generate and score
    result = PromptResult(ids, alloc.bins, alloc.counts, k, k / alloc.counts, 1.0 - k / alloc.counts)
    c2, t2 = time.thread_time(), time.perf_counter()
    ctl.observe(result)
    c3, t3 = time.thread_time(), time.perf_counter()
    return t1 - t0, t3 - t2, (c1 - c0) + (c3 - c2)


def bench(n_prompts: int, tracked: int, allocator: str, steps: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    ctl = build(tracked, allocator, rng)
    p_T = rng.beta(0.7, 0.7, tracked)
    batches = [rng.choice(tracked, n_prompts, replace=False) for _ in range(steps + 20)]
    for ids in batches[:20]:  # warm-up: scores and arms move away from their initial ties
        one_step(ctl, ids, p_T, rng)
    decide_s, observe_s, cpu_s, metrics_s = [], [], [], []
    for ids in batches[20:]:
        d, o, cpu = one_step(ctl, ids, p_T, rng)
        cpu_s.append(cpu)
        t0 = time.perf_counter()
        ctl.metrics()
        metrics_s.append(time.perf_counter() - t0)
        decide_s.append(d)
        observe_s.append(o)
    step_ms = 1e3 * (np.array(decide_s) + np.array(observe_s))
    clf = ctl.classifier
    nbytes = clf.bytes_per_prompt * clf.capacity
    return {
        "decide_ms": 1e3 * float(np.median(decide_s)),
        "observe_ms": 1e3 * float(np.median(observe_s)),
        "step_ms": float(np.median(step_ms)),
        "step_p90_ms": float(np.percentile(step_ms, 90)),
        "cpu_ms": 1e3 * float(np.median(cpu_s)),
        "metrics_ms": 1e3 * float(np.median(metrics_s)),
        "bytes_per_slot": clf.bytes_per_prompt,
        "bytes_per_tracked": nbytes / clf.num_tracked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per configuration")
    args = parser.parse_args()
    header = (
        f"{'prompts':>7} {'tracked':>9} {'allocator':>9} {'decide ms':>9} {'observe ms':>10} {'step ms':>8} "
        f"{'p90 ms':>7} {'cpu ms':>7} {'metrics ms':>10} {'B/slot':>7} {'B/tracked':>9}"
    )
    print(header)
    print("-" * len(header))
    for tracked in (10**4, 10**6):
        for n_prompts in (256, 512):
            for allocator in ("bandit", "sqrt", "knapsack"):
                r = bench(n_prompts, tracked, allocator, args.steps)
                print(
                    f"{n_prompts:>7} {tracked:>9} {allocator:>9} {r['decide_ms']:>9.3f} {r['observe_ms']:>10.3f} "
                    f"{r['step_ms']:>8.3f} {r['step_p90_ms']:>7.3f} {r['cpu_ms']:>7.3f} {r['metrics_ms']:>10.3f} "
                    f"{r['bytes_per_slot']:>7.1f} {r['bytes_per_tracked']:>9.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
