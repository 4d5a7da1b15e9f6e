"""K rollout actors behind the one-engine contract (`rlbal.rollout.engine.RolloutEngine`).

`generate` cuts the prompts into K contiguous chunks balanced by completions (`split_prompts`), gives
each chunk the seed offset that reproduces one engine's per-prompt vLLM seeds (`chunk_seeds`), sends one
call per actor, and gathers the completions back in prompt order: the driver and the controllers see
the same data as with one local engine. `update_weights` takes the learner group's `WeightsRef` (one
`ray.put` by learner rank 0) and makes one call per actor with that reference; actors read the numpy
arrays zero-copy.

Faults. Every actor reply carries the actor's incarnation id (`rlbal.rollout.actor.ActorReply`). When a
call fails because its actor died (Ray restarts it, up to `max_restarts`), or a reply comes from a new
incarnation (it restarted since the last call and lost the weights), the group waits for the actor to
answer again, re-sends the current weights, counts and logs the restart (`ray/actor_restarts`) and
sends the *same chunk* again: no prompt is lost or duplicated, and no completion from stale weights is
kept. An actor out of restarts raises `RolloutActorLost`.

    group = RolloutGroup(actors, incarnations, RayStats(), timeout_s=120, max_restarts=3)
    result = group.generate(prompt_ids, counts=[2, 7, 3], sampling=SamplingSpec(max_new_tokens=64, seed=0))
    group.update_weights(learner_group.export_weights())
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from rlbal.ray.placement import chunk_seeds, split_prompts
from rlbal.ray.records import RayStats, WeightsRef
from rlbal.rollout.engine import GenerationResult, SamplingSpec

log = logging.getLogger("rlbal.ray")


class RolloutActorLost(RuntimeError):
    """A rollout actor died and Ray will not restart it again (max_restarts used up)."""


@dataclass
class Call:
    """One actor method call: its chunk of the work, retried as a whole after a fault."""

    method: str
    args: tuple
    prompts: int = 0  # prompts in the chunk (for `ray/regenerated_prompts`)


@dataclass
class Flight:
    """Calls in flight: {ray ref: actor}, the call of each actor, attempts and answers per actor."""

    calls: dict[int, Call]
    pending: dict[Any, int]
    started: float = field(default_factory=time.perf_counter)
    attempts: dict[int, int] = field(default_factory=dict)
    done: dict[int, Any] = field(default_factory=dict)


@dataclass
class PendingGeneration:
    """A `generate` already submitted (`submit_generate`); `collect` turns it into a GenerationResult."""

    flight: Flight
    chunks: list[tuple[int, int]]
    prompt_token_ids: list[list[int]]


class RolloutGroup:
    """The rollout actors of a run (see the module docstring)."""

    def __init__(
        self,
        actors: Sequence[Any],
        incarnations: Sequence[str],
        stats: RayStats,
        *,
        timeout_s: float,
        max_restarts: int,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        if len(actors) != len(incarnations) or not actors:
            raise ValueError(f"RolloutGroup: {len(actors)} actors but {len(incarnations)} incarnations (need >= 1)")
        self.actors = list(actors)
        self.known = list(incarnations)  # incarnation holding our weights, per actor
        self.restarts = [0] * len(actors)
        self.stats, self.timeout_s, self.max_restarts = stats, timeout_s, max_restarts
        self.weights: WeightsRef | None = None  # the latest weights (None = the checkpoint the actors loaded)
        self._sync: Flight | None = None  # a weight update sent without waiting (async mode)
        self._on_shutdown = on_shutdown

    @property
    def version(self) -> int:
        """Learner updates behind the weights the actors hold (or will, once queued updates run)."""
        return self.weights.version if self.weights is not None else 0

    # ------------------------------------------------------------------ generation
    def submit_generate(
        self, prompt_token_ids: Sequence[Sequence[int]], counts: Sequence[int], sampling: SamplingSpec
    ) -> PendingGeneration:
        """Send every actor its chunk and return at once (actors run calls in the order they were sent)."""
        self._settle_sync()
        counts = [int(c) for c in counts]
        chunks = split_prompts(counts, len(self.actors))
        seeds = chunk_seeds(sampling.seed, counts, chunks)
        calls = {
            k: Call(
                "generate",
                ([list(p) for p in prompt_token_ids[a:b]], counts[a:b], dataclasses.replace(sampling, seed=seeds[k])),
                prompts=b - a,
            )
            for k, (a, b) in enumerate(chunks)
            if sum(counts[a:b]) > 0
        }
        return PendingGeneration(self._start(calls), chunks, [list(p) for p in prompt_token_ids])

    def collect(self, pending: PendingGeneration) -> GenerationResult:
        """Wait for a submitted generate (recovering from actor faults) and gather completions in prompt order."""
        values = self._finish(pending.flight)
        completions = [
            dataclasses.replace(c, prompt_index=c.prompt_index + pending.chunks[k][0])
            for k in sorted(values)
            for c in values[k].completions
        ]
        actor_s = np.array([values[k].timings.get("generate", 0.0) for k in sorted(values)] or [0.0])
        self.stats.generate_imbalance = float(actor_s.max() / max(actor_s.mean(), 1e-9))
        wall = time.perf_counter() - pending.flight.started
        self.stats.generate_overhead_s = wall - float(actor_s.max())  # calls, transfers, gathering
        return GenerationResult(
            completions, pending.prompt_token_ids, {"generate": wall, "generate_actor_max": float(actor_s.max())}
        )

    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], counts: Sequence[int], sampling: SamplingSpec
    ) -> GenerationResult:
        return self.collect(self.submit_generate(prompt_token_ids, counts, sampling))

    def score(
        self, prompt_token_ids: Sequence[Sequence[int]], completion_token_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """Engine logprobs of given completions, pairs split over the actors (every actor scores a part)."""
        self._settle_sync()
        chunks = split_prompts(
            [len(p) + len(c) for p, c in zip(prompt_token_ids, completion_token_ids)], len(self.actors)
        )
        calls = {
            k: Call("score", (list(prompt_token_ids[a:b]), list(completion_token_ids[a:b])), prompts=b - a)
            for k, (a, b) in enumerate(chunks)
            if b > a
        }
        values = self._finish(self._start(calls))
        return [row for k in sorted(values) for row in values[k]]

    # ------------------------------------------------------------------ weights and memory
    def update_weights(self, state: WeightsRef | Mapping[str, Any], wait: bool = True) -> float:
        """Load `state` into every actor (one call each, same object-store reference); seconds until all loaded.

        `state` is the learner group's `WeightsRef`, or a name -> tensor mapping (put here once). With
        `wait=False` the calls are queued behind whatever the actors are running and checked at the next call.
        """
        t0 = time.perf_counter()
        self._settle_sync()
        self.weights = state if isinstance(state, WeightsRef) else put_weights(state, self.version)
        calls = {k: Call("update_weights", (self.weights.ref,)) for k in range(len(self.actors))}
        self._sync = self._start(calls)
        self.stats.weight_put_s, self.stats.weight_mbytes = self.weights.put_s, self.weights.nbytes / 2**20
        if wait:
            self._settle_sync()
        return time.perf_counter() - t0

    def _settle_sync(self) -> None:
        if self._sync is not None:
            flight, self._sync = self._sync, None
            self._finish(flight)
            self.stats.weight_load_s = time.perf_counter() - flight.started

    def sleep(self) -> None:
        """Colocated placement: free accelerator memory while learners update (a no-op on CPU, still called)."""
        self._finish(self._start({k: Call("sleep", ()) for k in range(len(self.actors))}))

    def wake(self) -> None:
        self._finish(self._start({k: Call("wake", ()) for k in range(len(self.actors))}))

    def metrics(self) -> dict[str, float]:
        """Nothing of its own: the group's `ray/*` counters (`RayStats`) ride with the learner group's updates."""
        return {}

    def shutdown(self) -> None:
        """Tear the run's actors down (the orchestrator's hook: rollout and learner actors, placement group)."""
        hook, self._on_shutdown = self._on_shutdown, None
        if hook is not None:
            hook()

    # ------------------------------------------------------------------ calls and faults
    def _start(self, calls: dict[int, Call]) -> Flight:
        flight = Flight(calls, {})
        for k, call in calls.items():
            flight.pending[getattr(self.actors[k], call.method).remote(*call.args)] = k
            flight.attempts[k] = 1
        return flight

    def _finish(self, flight: Flight) -> dict[int, Any]:
        """Values per actor; a chunk whose actor died or lost its weights is recovered and sent again."""
        while flight.pending:
            [ref], _ = ray.wait(list(flight.pending), num_returns=1)
            k = flight.pending.pop(ref)
            reply = self._reply(ref, k)
            if reply is not None:
                flight.done[k] = reply.value
                continue
            call = flight.calls[k]
            if flight.attempts[k] > self.max_restarts:
                raise RolloutActorLost(f"rollout actor {k}: {call.method} failed {flight.attempts[k]} times")
            self.stats.regenerated_prompts += call.prompts
            flight.attempts[k] += 1
            flight.pending[getattr(self.actors[k], call.method).remote(*call.args)] = k
        return flight.done

    def _reply(self, ref: Any, k: int) -> Any | None:
        """The actor's reply, or None after recovering an actor whose answer cannot be used."""
        try:
            reply = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            self._recover(k, f"died during a call ({type(err).__name__})")
            return None
        if reply.incarnation == self.known[k]:
            return reply
        if self.weights is None:  # restarted before any update: it holds the checkpoint, like everyone
            self._note_restart(k, reply.incarnation, "restarted between calls; still on the initial weights")
            return reply
        self._recover(k, "restarted between calls and lost the weights", seen=reply.incarnation)
        return None

    def _recover(self, k: int, why: str, seen: str | None = None) -> None:
        """Wait until actor k answers, record its new incarnation and re-send the current weights."""
        incarnation = seen or self._ping_until_up(k)
        self._note_restart(k, incarnation, why)
        if self.weights is not None:
            reply = ray.get(self.actors[k].update_weights.remote(self.weights.ref), timeout=self.timeout_s)
            if reply.incarnation != self.known[k]:
                self._recover(k, "restarted again while its weights were re-sent", seen=reply.incarnation)

    def _note_restart(self, k: int, incarnation: str, why: str) -> None:
        self.restarts[k] += 1
        self.stats.actor_restarts += 1
        old, self.known[k] = self.known[k], incarnation
        msg = (
            f"[rlbal.ray] rollout actor {k} {why}: restart {self.restarts[k]}/{self.max_restarts} "
            f"(incarnation {old[:8]} -> {incarnation[:8]}); weights re-sent, its prompts regenerated"
        )
        log.warning(msg)
        print(msg, flush=True)  # also in `ray job logs` / the console, whatever logging is configured

    def _ping_until_up(self, k: int) -> str:
        """Incarnation of actor k once it answers again. A restarting actor refuses calls with
        ActorUnavailableError for a few seconds; ActorDiedError means Ray will not restart it."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return ray.get(self.actors[k].ping.remote(), timeout=max(deadline - time.monotonic(), 0.1)).incarnation
            except ray.exceptions.ActorDiedError as err:
                raise RolloutActorLost(
                    f"rollout actor {k} is dead for good after {self.restarts[k]} restarts "
                    f"(max_restarts={self.max_restarts})"
                ) from err
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError) as err:
                if time.monotonic() > deadline:
                    raise RolloutActorLost(
                        f"rollout actor {k} did not come back within {self.timeout_s:g}s (ray.init_timeout_s)"
                    ) from err
            time.sleep(0.2)


def put_weights(state: Mapping[str, Any], version: int) -> WeightsRef:
    """A name -> tensor mapping into the object store, once, as zero-copy numpy."""
    from rlbal.rollout.weight_sync import to_numpy

    t0 = time.perf_counter()
    payload = to_numpy(state)
    return WeightsRef(ray.put(payload), payload.nbytes, version, time.perf_counter() - t0)
