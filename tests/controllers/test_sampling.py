"""BinSampler: the pool grouped by class (moves against a plain reference), draws by q, state round trip."""

import json

import numpy as np
import pytest

from rlbal.controllers.sampling import BinSampler


def test_moves_keep_every_prompt_in_exactly_its_class():
    rng = np.random.default_rng(0)
    s = BinSampler(num_prompts=300, num_classes=7, start_class=6, seed=1)
    truth = np.full(300, 6)
    for _ in range(200):
        ids = rng.choice(300, size=int(rng.integers(1, 40)), replace=False)
        cls = rng.integers(0, 7, ids.size)
        s.move(ids, cls)
        truth[ids] = cls
        for c in range(7):
            assert sorted(s.members(c).tolist()) == np.flatnonzero(truth == c).tolist()
        assert (s.pos[s.order] == np.arange(300)).all() and (s.cls == truth).all()


def test_draws_match_q_and_are_uniform_within_a_class():
    s = BinSampler(num_prompts=100, num_classes=3, start_class=2, seed=0)
    s.move(np.arange(10), [0] * 10)  # class 0: 10 prompts, class 1: empty, class 2: 90
    q = np.array([0.6, 0.3, 0.1])  # class 1 is empty: q renormalises over {0, 2} -> 6/7, 1/7
    ids = np.concatenate([s.draw(50, q)[0] for _ in range(400)])  # 20000 draws
    frac0 = (ids < 10).mean()
    assert abs(frac0 - 6 / 7) < 4 * np.sqrt(6 / 7 / 7 / ids.size)
    per_id = np.bincount(ids[ids < 10], minlength=10)
    assert per_id.min() > 0.8 * per_id.mean()  # uniform within the class
    one = s.draw(50, q)[0]
    assert np.unique(one[one < 10]).size == min(10, (one < 10).sum())  # no repeats while the class has room
    assert s.metrics()["controller/sampler/pool_share/class_0"] == 0.1


def test_state_round_trip_continues_the_same_draws():
    s = BinSampler(num_prompts=50, num_classes=4, start_class=3, seed=5)
    s.move([1, 2, 3, 4], [0, 1, 2, 0])
    s.draw(10, np.ones(4))
    back = BinSampler(num_prompts=50, num_classes=4, start_class=3, seed=0)
    back.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert back.draw(20, np.ones(4))[0].tolist() == s.draw(20, np.ones(4))[0].tolist()
    assert (back.cls == s.cls).all() and (back.pos == s.pos).all()
    with pytest.raises(ValueError, match="num_prompts: saved=50, current=51"):
        BinSampler(num_prompts=51, num_classes=4, start_class=3).load_state_dict(s.state_dict())
