"""Controllers (the composite): decision order, checkpoint identity, resume determinism, config embedding."""
import json

import numpy as np
import pytest

from rlbal.controllers import (ClassifierConfig, Controllers, DifficultyClassifier, PromptGDRO, PromptGDROConfig,
                               PromptResult, RolloutGDROConfig)
from rlbal.controllers.sim import SimConfig, Simulator, SyntheticPrompts


def full_controllers(**kw):
    return Controllers.from_configs(ClassifierConfig(num_bins=5, window=8, hysteresis=0.03),
                                    PromptGDROConfig(seed=3, **kw), RolloutGDROConfig())


def test_decide_classifies_then_allocates_then_weights():
    ctl = full_controllers(eta=1.0, gamma=0.0)
    ctl.classifier.update([0, 0, 1, 1], [1, 1, 0, 0])  # prompt 0: acc 1 -> bin 4; prompt 1: acc 0 -> bin 0
    ctl.prompt_gdro.scores[:] = [np.log(3.0), 0, 0, 0, 0]  # q over {0, 4} = [3/4, 1/4]
    ctl.rollout.scores[0, 4] = ctl.rollout.scores[4, 0] = 5.0  # class 0 prefers 6 rollouts, class 4 prefers 2
    a = ctl.decide([0, 1, 2])  # prompt 2 unseen -> hardest bin
    # preferred arm p = .99 e^3.25 / (e^3.25 + 10) + .01/11 = .714, others .0286. Budget 12 = 2 n_0 + n_4: class 0
    # cannot play 6 (n_4 would be 0), so (n_0, n_4) = (5, 2) with one preferred arm (.0286 x .714) beats every
    # other feasible pair, which has none (e.g. (4, 4): .0286^2)
    assert a.bins.tolist() == [4, 0, 0] and a.counts.tolist() == [2, 5, 5]
    # weights: q per prompt [1/4, 3/4, 3/4], mean 1 over the responses a.counts
    q = np.array([0.25, 0.75, 0.75])
    np.testing.assert_allclose(a.weights, q * a.counts.sum() / (a.counts @ q))


def test_decide_without_optional_controllers_uses_the_fixed_count():
    ctl = Controllers.from_configs(ClassifierConfig(), n_rollouts=6)
    a = ctl.decide([3, 1])
    assert a.counts.tolist() == [6, 6] and a.weights.tolist() == [1.0, 1.0] and set(ctl.components) == {"classifier"}


def test_observe_updates_history_after_the_controllers():
    ctl = full_controllers()
    r = PromptResult(ids=[5, 6], bins=[0, 0], n_rollouts=[4, 4], n_correct=[4, 0], reward_mean=[1, 0],
                     loss_signal=[0.0, 1.0])
    ctl.observe(r)
    assert ctl.classifier.classify([5, 6]).tolist() == [4, 0]
    assert ctl.prompt_gdro.scores[0] == pytest.approx(0.5)  # mean 0.5 at share 1 (first observation)
    assert ctl.rollout.var[0] == 0.0  # both groups all-right / all-wrong: no within-prompt variance


def test_component_mismatches_are_rejected():
    clf = DifficultyClassifier(ClassifierConfig(num_bins=3, edges=(0.4, 0.75)))
    with pytest.raises(ValueError, match="prompt_gdro has classes"):
        Controllers(clf, PromptGDRO(num_classes=10))
    with_pg = full_controllers()
    without = Controllers.from_configs(ClassifierConfig(num_bins=5, window=8, hysteresis=0.03),
                                       rollout=RolloutGDROConfig())
    with pytest.raises(ValueError, match=r"components \['classifier', 'prompt_gdro', 'rollout'\], this run has "
                                         r"\['classifier', 'rollout'\]"):
        without.load_state_dict(with_pg.state_dict())


def test_resume_gives_identical_decisions():
    prompts = SyntheticPrompts(np.random.default_rng(0).uniform(0, 0.6, 300))
    sim = Simulator(prompts, full_controllers(), SimConfig(batch_size=48, seed=5, signal="neg_sq_stderr",
                                                           signal_scale=20.0))
    sim.run(25)
    saved = json.dumps(sim.state_dict())
    reference = [sim.step()[0] for _ in range(15)] + [sim.controllers.sample(np.arange(300), 40)[1]]
    restored = Simulator(prompts, full_controllers(), SimConfig(batch_size=48, seed=999, signal="neg_sq_stderr",
                                                                signal_scale=20.0))
    restored.load_state_dict(json.loads(saved))
    replay = [restored.step()[0] for _ in range(15)] + [restored.controllers.sample(np.arange(300), 40)[1]]
    for a, b in zip(reference[:-1], replay[:-1]):
        assert a.ids.tolist() == b.ids.tolist() and a.bins.tolist() == b.bins.tolist()
        assert a.counts.tolist() == b.counts.tolist() and a.weights.tolist() == b.weights.tolist()
    assert reference[-1].index.tolist() == replay[-1].index.tolist()
    assert len({tuple(a.counts) for a in reference[:-1]}) > 1  # the decisions do vary over the replayed steps
    assert restored.controllers.metrics() == sim.controllers.metrics()


def test_sample_draws_pool_ids():
    ctl = full_controllers()
    ids, draw = ctl.sample([100, 200, 300], 10)
    assert set(ids.tolist()) <= {100, 200, 300} and ids.tolist() == [[100, 200, 300][i] for i in draw.index]
    with pytest.raises(ValueError, match="needs Prompt-GDRO"):
        Controllers.from_configs().sample([1, 2], 1)


def test_configs_embed_in_pydantic_and_forbid_unknown_keys():
    pydantic = pytest.importorskip("pydantic")
    for cls, good in ((ClassifierConfig, {"num_bins": 3, "edges": [0.4, 0.75]}), (PromptGDROConfig, {"eta": 1.0}),
                      (RolloutGDROConfig, {"n_max": 8, "allocator": "sqrt"})):
        adapter = pydantic.TypeAdapter(cls)
        obj = adapter.validate_python(good)
        assert isinstance(obj, cls) and all(getattr(obj, k) == (tuple(v) if isinstance(v, list) else v)
                                            for k, v in good.items())
        with pytest.raises(pydantic.ValidationError, match="no_such_knob"):
            adapter.validate_python({**good, "no_such_knob": 1})
    with pytest.raises((pydantic.ValidationError, ValueError), match="eta must be > 0"):
        pydantic.TypeAdapter(PromptGDROConfig).validate_python({"eta": -1.0})
