"""Controllers (the composite): decision order, checkpoint identity, resume determinism, config embedding."""

import json

import numpy as np
import pytest

from rlbal.controllers import (
    ClassifierConfig,
    Controllers,
    DifficultyClassifier,
    PromptGDRO,
    PromptGDROConfig,
    PromptResult,
    RolloutGDROConfig,
)
from rlbal.controllers.sim import SimConfig, Simulator, SyntheticPrompts


def full_controllers(**kw):
    return Controllers.from_configs(
        ClassifierConfig(num_bins=5, window=8, hysteresis=0.03),
        PromptGDROConfig(seed=3, **kw),
        RolloutGDROConfig(allocator="sqrt"),
    )


def test_decide_classifies_then_allocates_then_weights():
    ctl = full_controllers(eta=1.0, gamma=0.0)
    ctl.classifier.update_counts([0, 1], [4, 2], [4, 4])  # prompt 0: 4/4 -> bin 4; prompt 1: 2/4 -> bin 2
    ctl.prompt_gdro.scores[:] = [np.log(3.0), 0, 0, 0, 0]  # q over {0, 4} = [3/4, 1/4]
    ctl.rollout.m1[[0, 4]] = [0.1, 0.9]  # both classes: variance 0.09 -> equal counts
    ctl.rollout.m2[[0, 4]] = [0.01, 0.81]
    a = ctl.decide([0, 2, 3])  # prompts 2, 3 unseen -> hardest bin
    assert a.bins.tolist() == [4, 0, 0] and a.counts.tolist() == [4, 4, 4]
    # weights: q per prompt [1/4, 3/4, 3/4], mean 1 over the responses a.counts
    q = np.array([0.25, 0.75, 0.75])
    np.testing.assert_allclose(a.weights, q * a.counts.sum() / (a.counts @ q))


def test_batch_weights_are_normalised_over_the_trained_batch():
    # round 1 decided 2 prompts of bin 0 and 2 of bin 4; filtering kept one of each; round 2 added one of bin 0.
    ctl = full_controllers(eta=1.0, gamma=0.0)
    ctl.prompt_gdro.scores[:] = [np.log(3.0), 0, 0, 0, 0]
    w1 = ctl.batch_weights([0, 0, 4, 4], [4, 4, 4, 4])  # q 3/4, 1/4 -> mean-1 over this round: 1.5, 0.5
    np.testing.assert_allclose(w1, [1.5, 1.5, 0.5, 0.5])
    trained = ctl.batch_weights([0, 4, 0], [4, 4, 4])  # mean-1 over the trained batch: q / (7/12)
    np.testing.assert_allclose(trained, np.array([0.75, 0.25, 0.75]) / (1.75 / 3))
    assert trained.mean() == pytest.approx(1.0)  # per-round weights would give (1.5 + 0.5 + w) / 3 != 1


def test_decide_without_optional_controllers_uses_the_fixed_count():
    ctl = Controllers.from_configs(ClassifierConfig(), n_rollouts=6)
    a = ctl.decide([3, 1])
    assert a.counts.tolist() == [6, 6] and a.weights.tolist() == [1.0, 1.0] and set(ctl.components) == {"classifier"}


def test_observe_feeds_every_group_and_prompt_gdro_only_the_trained_ones():
    ctl = full_controllers()
    r = PromptResult(
        ids=[5, 6, 7],
        bins=[0, 0, 0],
        n_rollouts=[4, 4, 4],
        n_correct=[4, 0, 2],
        reward_mean=[1, 0, 0.5],
        loss_signal=[0.0, 1.0, 0.5],
        trained=[False, False, True],
    )  # a [0.2, 0.8] filter kept only 7
    ctl.observe(r)
    assert ctl.classifier.estimate([5, 6, 7]).tolist() == [1.0, 0.0, 0.5]  # dropped groups enter the history too
    assert ctl.classifier.classify([5, 6, 7]).tolist() == [4, 0, 2]
    assert ctl.prompt_gdro.scores[0] == pytest.approx(0.5)  # only the trained group's signal (share 1)
    # Rollout-GDRO sees all three: m1 = (1 + 0 + 0.5) / 3, m2 = (1 + 0 + 2/12) / 3
    assert ctl.rollout.m1[0] == pytest.approx(0.5) and ctl.rollout.m2[0] == pytest.approx(7 / 18)


def test_component_mismatches_are_rejected():
    clf = DifficultyClassifier(ClassifierConfig(num_bins=3, edges=(0.4, 0.75)))
    with pytest.raises(ValueError, match="prompt_gdro has classes"):
        Controllers(clf, PromptGDRO(num_classes=10))
    with_pg = full_controllers()
    without = Controllers.from_configs(
        ClassifierConfig(num_bins=5, window=8, hysteresis=0.03), rollout=RolloutGDROConfig()
    )
    with pytest.raises(
        ValueError,
        match=r"components \['classifier', 'prompt_gdro', 'rollout'\], this run has "
        r"\['classifier', 'rollout'\]",
    ):
        without.load_state_dict(with_pg.state_dict())


@pytest.mark.parametrize("realise", ["advantage", "sampling"])
def test_resume_gives_identical_decisions(realise):
    prompts = SyntheticPrompts(np.random.default_rng(0).uniform(0, 0.6, 300))

    def make(seed):
        ctl = Controllers.from_configs(
            ClassifierConfig(num_bins=5, window=8, hysteresis=0.03, unseen="separate"),
            PromptGDROConfig(seed=3, realise=realise),
            RolloutGDROConfig(),
            num_prompts=300,
        )
        return Simulator(prompts, ctl, SimConfig(batch_size=48, seed=seed, signal="failure_rate", signal_scale=5.0))

    sim = make(5)
    sim.run(25)
    saved = json.dumps(sim.state_dict())
    reference = [sim.step() for _ in range(15)]
    restored = make(999)
    restored.load_state_dict(json.loads(saved))
    replay = [restored.step() for _ in range(15)]
    for a, b in zip(reference, replay):
        for key in ("ids", "bins", "counts", "weights", "correct"):
            assert a[key].tolist() == b[key].tolist()
    assert len({tuple(a["counts"]) for a in reference}) > 1  # the decisions do vary over the replayed steps
    assert restored.controllers.metrics() == sim.controllers.metrics()


def test_sampling_draws_the_pool_by_q_and_needs_a_separate_unseen_class():
    def make(**kw):
        ctl = Controllers.from_configs(
            ClassifierConfig(num_bins=2, unseen="separate"),
            PromptGDROConfig(realise="sampling", eta=1.0, gamma=0.0, **kw),
            num_prompts=1000,
        )
        ctl.observe(
            PromptResult(
                ids=np.arange(100),
                bins=[2] * 100,
                n_rollouts=[4] * 100,
                n_correct=[0] * 50 + [4] * 50,
                reward_mean=[0] * 50 + [1] * 50,
                loss_signal=[0] * 100,
            )
        )
        ctl.prompt_gdro.scores[:] = [np.log(6.0), 0.0, np.log(3.0)]  # q = [.6, .1, .3]
        return ctl

    ctl = make()
    assert ctl.sampler.sizes().tolist() == [50, 50, 900]  # bin 0, bin 1, unseen
    ids = np.concatenate([ctl.sample(64) for _ in range(300)])
    shares = np.array([(ids < 50).mean(), ((ids >= 50) & (ids < 100)).mean(), (ids >= 100).mean()])
    np.testing.assert_allclose(shares, [0.6, 0.1, 0.3], atol=4 * np.sqrt(0.25 / ids.size))
    assert ctl.batch_weights([0, 2], [4, 4]).tolist() == [1.0, 1.0]
    # importance weights: pool share / q = .05 / .6, .05 / .1, .9 / .3
    np.testing.assert_allclose(make(is_weights=True).batch_weights([0, 1, 2], [4, 4, 4]), [1 / 12, 0.5, 3.0])
    with pytest.raises(ValueError, match="needs ClassifierConfig.unseen='separate'"):
        Controllers.from_configs(ClassifierConfig(), PromptGDROConfig(realise="sampling"), num_prompts=10)
    with pytest.raises(ValueError, match="needs Prompt-GDRO with realise='sampling'"):
        Controllers.from_configs().sample(1)


def test_configs_embed_in_pydantic_and_forbid_unknown_keys():
    pydantic = pytest.importorskip("pydantic")
    for cls, good in (
        (ClassifierConfig, {"num_bins": 3, "edges": [0.4, 0.75]}),
        (PromptGDROConfig, {"eta": 1.0}),
        (RolloutGDROConfig, {"n_max": 8, "allocator": "sqrt"}),
    ):
        adapter = pydantic.TypeAdapter(cls)
        obj = adapter.validate_python(good)
        assert isinstance(obj, cls) and all(
            getattr(obj, k) == (tuple(v) if isinstance(v, list) else v) for k, v in good.items()
        )
        with pytest.raises(pydantic.ValidationError, match="no_such_knob"):
            adapter.validate_python({**good, "no_such_knob": 1})
    with pytest.raises((pydantic.ValidationError, ValueError), match="eta must be > 0"):
        pydantic.TypeAdapter(PromptGDROConfig).validate_python({"eta": -1.0})


def test_advantage_normalisation_keeps_grpos_step_and_moves_it_between_informative_classes():
    ctl = Controllers.from_configs(
        ClassifierConfig(num_bins=5), PromptGDROConfig(eta=1.0, gamma=0.0, normalise="advantage")
    )
    ctl.prompt_gdro.scores[:] = [np.log(3.0), 0, 0, 0, 0]  # q over {0, 4} = [3/4, 1/4]
    # prompt 0 (bin 0) is all wrong (no advantage), prompts 1, 2 (bin 4) carry |A| 4 and 2
    w = ctl.batch_weights([0, 4, 4], [4, 4, 4], adv_mass=[0.0, 4.0, 2.0])
    # mean 1 weighted by |A|: q / (sum q |A| / sum |A|) = q / (1/4): bin 4 gets exactly 1, bin 0 gets 3
    np.testing.assert_allclose(w, [3.0, 1.0, 1.0])
    assert w @ [0.0, 4.0, 2.0] == pytest.approx(6.0)  # the weighted |A| equals GRPO's: same step size
    by_responses = full_controllers(eta=1.0, gamma=0.0)
    by_responses.prompt_gdro.scores[:] = [np.log(3.0), 0, 0, 0, 0]
    np.testing.assert_allclose(
        by_responses.batch_weights([0, 4, 4], [4, 4, 4], adv_mass=[0.0, 4.0, 2.0]), [1.8, 0.6, 0.6]
    )  # q / mean q: bin 4's informative groups shrink to 0.6
