"""Online difficulty filtering: hand tables of keep/drop, batch refill, the round bound, truncation, state."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rlbal.controllers.filtering import (
    REASONS,
    FillExhaustedError,
    FilterConfig,
    GroupFilter,
    decide,
    group_stats,
)


def binary_groups(n_correct, size):
    """0/1 scores for groups of `size` responses with the given numbers correct, and counts_G."""
    scores = np.concatenate([np.r_[np.ones(k), np.zeros(size - k)] for k in n_correct])
    return scores, np.full(len(n_correct), size)


def reasons(cfg, scores, counts):
    mean_G, std_G = group_stats(scores, counts)
    return [REASONS[c] for c in decide(cfg, mean_G, std_G, np.asarray(counts))]


# ---------------------------------------------------------------- group statistics


def test_group_stats_ragged_groups():
    # groups [1,0,1,1] [0,0] [1] [0.5,1.5]: means 0.75, 0, 1, 1; population stds sqrt(.75*.25)=0.4330, 0, 0, 0.5
    m, s = group_stats([1, 0, 1, 1, 0, 0, 1, 0.5, 1.5], [4, 2, 1, 2])
    np.testing.assert_allclose(m, [0.75, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(s, [np.sqrt(0.1875), 0.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="sum to len"):
        group_stats([1, 0, 1], [2, 2])


# ---------------------------------------------------------------- keep/drop tables


def test_default_band_on_groups_of_five():
    # pass rates 0/5 .. 5/5 = 0, .2, .4, .6, .8, 1 against the closed band [0.2, 0.8]
    scores, counts = binary_groups([0, 1, 2, 3, 4, 5], 5)
    assert reasons(FilterConfig(), scores, counts) == [
        "too_hard",  # 0.0 < 0.2
        "kept",  # 0.2: closed lower end
        "kept",
        "kept",
        "kept",  # 0.8: closed upper end
        "too_easy",  # 1.0 > 0.8
    ]


def test_open_ends_drop_groups_exactly_at_the_band():
    scores, counts = binary_groups([1, 2, 4], 5)  # 0.2, 0.4, 0.8
    cfg = FilterConfig(low_closed=False, high_closed=False)
    assert reasons(cfg, scores, counts) == ["too_hard", "kept", "too_easy"]


def test_band_end_is_matched_with_tolerance_not_float_equality():
    # Continuous means a rounding error away from the end 0.3 count as *at* it: 0.7-0.4 = 0.29999999999999993
    # is kept by a closed end; 0.1+0.2 = 0.30000000000000004 is dropped by an open one.
    cfg_closed, cfg_open = FilterConfig(low=0.3, high=0.9), FilterConfig(low=0.3, high=0.9, low_closed=False)
    assert reasons(cfg_closed, np.array([0.7 - 0.4, 0.7 - 0.4]), [2]) == ["kept"]
    assert reasons(cfg_open, np.array([0.1 + 0.2, 0.1 + 0.2]), [2]) == ["too_hard"]
    # the same at the upper end 0.9: 1.1-0.2 = 0.9000000000000001 kept (closed);
    # 0.3*3 = 0.8999999999999999 dropped (open)
    assert reasons(FilterConfig(low=0.3, high=0.9), np.array([1.1 - 0.2, 1.1 - 0.2]), [2]) == ["kept"]
    assert reasons(FilterConfig(low=0.3, high=0.9, high_closed=False), np.array([0.3 * 3, 0.3 * 3]), [2]) == [
        "too_easy"
    ]


def test_small_groups_are_dropped_first():
    # sizes 1, 2, 3 with one correct each: 1/1 = 1.0, 1/2, 1/3. Size 1 is too small before it is "too easy".
    scores = np.array([1, 1, 0, 1, 0, 0], float)
    assert reasons(FilterConfig(), scores, [1, 2, 3]) == ["too_small", "kept", "kept"]
    assert reasons(FilterConfig(min_group_size=3), scores, [1, 2, 3]) == ["too_small", "too_small", "kept"]
    assert reasons(FilterConfig(min_group_size=1), scores, [1, 2, 3]) == ["too_easy", "kept", "kept"]


def test_dapo_open_unit_band_equals_the_std_rule_on_binary_groups():
    scores, counts = binary_groups(range(9), 8)  # 0/8 .. 8/8
    dapo_band = FilterConfig(low=0.0, high=1.0, low_closed=False, high_closed=False)
    band = reasons(dapo_band, scores, counts)
    std = reasons(FilterConfig(rule="std"), scores, counts)
    assert band == ["too_hard"] + ["kept"] * 7 + ["too_easy"]
    assert [r == "kept" for r in band] == [r == "kept" for r in std]
    assert std[0] == std[-1] == "no_variance"


def test_std_rule_uses_a_tolerance_for_continuous_rewards():
    # [0.1]*3: identical rewards, float mean 0.10000000000000002, so the std is ~1e-17, not exactly 0: dropped.
    # [0.1, 0.1, 0.1000001]: std 4.7e-8 <= 1e-6: dropped. [0.0, 0.5]: std 0.25: kept. ±1 rewards [1, -1]: std 1.
    scores = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1000001, 0.0, 0.5, 1.0, -1.0])
    assert reasons(FilterConfig(rule="std"), scores, [3, 3, 2, 2]) == ["no_variance", "no_variance", "kept", "kept"]


# ---------------------------------------------------------------- the batch fill


def test_fill_over_rounds_with_duplicates_and_exact_truncation():
    filt = GroupFilter(FilterConfig(keep_rate_beta=0.0))  # fixed requests: the shortfall
    fill = filt.start(target_groups=3)
    assert fill.request_size() == 3
    # Round 0, groups of 4: p0 0/4 too hard, p1 2/4 kept, p2 4/4 too easy.
    s, c = binary_groups([0, 2, 4], 4)
    assert fill.add(["p0", "p1", "p2"], s, c).tolist() == [1]
    assert (fill.kept, fill.done, fill.request_size()) == (1, False, 2)
    # Round 1: p1 again (2/4, would qualify: duplicate), p3 3/4 kept, p3 again in the same round (duplicate),
    # p4 1/4 kept, p5 2/4 qualifies after the batch is full (surplus), p6 4/4 too easy.
    s, c = binary_groups([2, 3, 3, 1, 2, 4], 4)
    assert fill.add(["p1", "p3", "p3", "p4", "p5", "p6"], s, c).tolist() == [1, 3]
    assert fill.done
    r = fill.result()
    assert r.prompt_ids == ("p1", "p3", "p4")  # arrival order, exactly the target
    assert r.round_K.tolist() == [0, 1, 1]
    assert r.index_K.tolist() == [1, 4, 6]  # positions among the 9 submitted groups
    assert (r.rounds, r.submitted, r.surplus, r.partial) == (2, 9, 1, False)
    assert r.dropped == {"too_small": 0, "too_hard": 1, "too_easy": 2, "no_variance": 0, "duplicate": 2}
    # every submitted group is accounted for exactly once
    assert len(r.prompt_ids) + r.surplus + sum(r.dropped.values()) == r.submitted


def test_a_prompt_rejected_once_is_not_rescued_by_a_second_draw():
    fill = GroupFilter(FilterConfig()).start(target_groups=1)
    s, c = binary_groups([0], 4)
    assert fill.add([7], s, c).tolist() == []  # too hard
    s, c = binary_groups([2], 4)
    assert fill.add(np.array([7]), s, c).tolist() == []  # same id (numpy int): duplicate, not kept
    assert fill.kept == 0


def test_copies_are_kept_as_groups_of_their_own_when_duplicates_are_not_dropped():
    # The driver's keep-everything filter (no filter configured): a prompt drawn twice (a batch across an
    # epoch boundary) trains as two groups instead of failing the fill.
    from rlbal.assemble import KEEP_ALL

    fill = GroupFilter(KEEP_ALL).start(target_groups=3)
    s, c = binary_groups([0, 2, 4], 4)
    assert fill.add(["a", "b", "a"], s, c).tolist() == [0, 1, 2]
    r = fill.result()
    assert r.prompt_ids == ("a", "b", "a") and not r.partial and r.dropped["duplicate"] == 0


def test_round_bound_raises_in_error_mode():
    fill = GroupFilter(FilterConfig(max_rounds=2)).start(target_groups=2)
    s, c = binary_groups([2, 4], 4)
    assert fill.add(["a", "b"], s, c).tolist() == [0]
    s, c = binary_groups([0, 0], 4)
    with pytest.raises(
        FillExhaustedError,
        match=r"only 1 of 2 groups qualified after 2 rounds \(4 groups scored; "
        r"dropped: too_small=0, too_hard=2, too_easy=1, no_variance=0, duplicate=0\)",
    ):
        fill.add(["c", "d"], s, c)


def test_round_bound_returns_a_logged_partial_batch(caplog):
    filt = GroupFilter(FilterConfig(max_rounds=2, on_exhausted="partial"))
    fill = filt.start(target_groups=2)
    s, c = binary_groups([2, 4], 4)
    fill.add(["a", "b"], s, c)
    s, c = binary_groups([0, 0], 4)
    with caplog.at_level(logging.WARNING, logger="rlbal.controllers.filtering"):
        assert fill.add(["c", "d"], s, c).tolist() == []
    assert "only 1 of 2 groups qualified after 2 rounds" in caplog.text
    r = fill.result()
    assert (r.prompt_ids, r.partial, r.rounds) == (("a",), True, 2)
    m = filt.metrics()
    assert (m["filter/kept"], m["filter/partial"], m["filter/total/partial_fills"]) == (1.0, 1.0, 1.0)


def test_finished_and_unfinished_fills_refuse_the_wrong_calls():
    fill = GroupFilter(FilterConfig()).start(target_groups=1)
    with pytest.raises(RuntimeError, match="fill is not done: 0 of 1 groups after 0 rounds"):
        fill.result()
    s, c = binary_groups([2], 4)
    fill.add(["a"], s, c)
    for call in (fill.request_size, lambda: fill.add(["b"], s, c)):
        with pytest.raises(RuntimeError, match="on a finished fill"):
            call()
    with pytest.raises(ValueError, match="2 prompt ids but 1 groups"):
        GroupFilter(FilterConfig()).start(1).add(["a", "b"], s, c)
    with pytest.raises(ValueError, match="target_groups must be >= 1"):
        GroupFilter(FilterConfig()).start(0)


def test_request_size_oversamples_and_adapts_to_the_qualify_rate():
    # Fixed factor: target 4, oversample 1.5 -> ceil(6.0) = 6; after 1 kept -> ceil(3 * 1.5) = ceil(4.5) = 5.
    fill = GroupFilter(FilterConfig(oversample=1.5, keep_rate_beta=0.0)).start(target_groups=4)
    assert fill.request_size() == 6
    s, c = binary_groups([2, 0, 0, 0, 0, 0], 4)
    fill.add(list("abcdef"), s, c)
    assert fill.request_size() == 5
    # Adaptive (beta 0.5): 1 of 6 qualified -> rate 0.5*1 + 0.5*(1/6) = 7/12; shortfall 3 -> ceil(3*12/7) = 6.
    filt = GroupFilter(FilterConfig(keep_rate_beta=0.5))
    fill = filt.start(target_groups=4)
    assert fill.request_size() == 4
    fill.add(list("abcdef"), s, c)
    assert filt.keep_rate == pytest.approx(7 / 12) and fill.request_size() == 6
    # Nothing qualifies: rate 7/24 then 7/48 -> the floor 0.1 caps the request at 3 / 0.1 = 30.
    for ids in ("ghijkl", "mnopqr", "stuvwx"):
        fill.add(list(ids), np.zeros(24), np.full(6, 4))
    assert filt.keep_rate == pytest.approx(7 / 96) and fill.request_size() == 30


def test_the_qualify_rate_carries_over_to_the_next_step():
    filt = GroupFilter(FilterConfig(keep_rate_beta=1.0))  # beta 1: the last round's rate
    fill = filt.start(target_groups=1)
    s, c = binary_groups([2, 2, 0, 0], 4)  # 2 of 4 qualify (one is surplus: it still counts) -> rate 0.5
    fill.add(list("abcd"), s, c)
    assert filt.keep_rate == 0.5
    assert filt.start(target_groups=3).request_size() == 6  # 3 / 0.5, and the same prompts may come back


# ---------------------------------------------------------------- metrics and state


def test_metrics_after_a_fill():
    filt = GroupFilter(FilterConfig(keep_rate_beta=0.0))
    assert filt.metrics() == {
        "filter/keep_rate_est": 1.0,
        **{f"filter/total/{k}": 0.0 for k in ("fills", "partial_fills", "rounds", "submitted", "kept", "surplus")},
    }
    fill = filt.start(target_groups=1)
    s, c = binary_groups([0, 1, 2, 4], 4)
    fill.add(list("abcd"), s, c)  # too hard, kept, surplus, too easy
    m = filt.metrics()
    assert m["filter/kept"] == 1.0 and m["filter/surplus"] == 1.0 and m["filter/submitted"] == 4.0
    assert m["filter/qualify_rate"] == 0.5  # (1 kept + 1 surplus) / 4
    assert m["filter/dropped/too_hard"] == 1.0 and m["filter/dropped/too_easy"] == 1.0
    assert m["filter/total/fills"] == 1.0 and m["filter/rounds"] == 1.0
    assert all(k.startswith("filter/") and isinstance(v, float) for k, v in m.items())


def test_state_dict_round_trip_and_rejection():
    filt = GroupFilter(FilterConfig(keep_rate_beta=0.5))
    fill = filt.start(target_groups=1)
    s, c = binary_groups([0, 0, 0, 2], 4)  # 1 of 4 qualifies -> rate 0.5 + 0.5 * 0.25 = 0.625
    fill.add(list("abcd"), s, c)
    state = filt.state_dict()
    again = GroupFilter(FilterConfig(keep_rate_beta=0.5))
    again.load_state_dict(state)
    assert again.keep_rate == 0.625 and again.state_dict() == state
    assert again.start(4).request_size() == filt.start(4).request_size() == 7  # ceil(4 / 0.625) = ceil(6.4)
    with pytest.raises(ValueError, match="not a GroupFilter checkpoint"):
        again.load_state_dict({"kind": "prompt_gdro", "keep_rate": 1.0, "totals": state["totals"]})
    with pytest.raises(ValueError, match="not a GroupFilter checkpoint"):
        again.load_state_dict({**state, "totals": {"fills": 1}})


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"rule": "variance"}, "rule"),
        ({"on_exhausted": "skip"}, "on_exhausted"),
        ({"low": 0.8, "high": 0.2}, "high"),
        ({"low": 0.5, "high": 0.5}, "high"),
        ({"tol": 0.0}, "tol"),
        ({"min_group_size": 0}, "min_group_size"),
        ({"oversample": 0.5}, "oversample"),
        ({"keep_rate_beta": 1.5}, "keep_rate_beta"),
        ({"min_keep_rate": 0.0}, "min_keep_rate"),
        ({"max_rounds": 0}, "max_rounds"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"FilterConfig\.{field} "):
        FilterConfig(**kwargs)


def test_config_embeds_in_pydantic_and_forbids_unknown_keys():
    pydantic = pytest.importorskip("pydantic")
    adapter = pydantic.TypeAdapter(FilterConfig)
    assert adapter.validate_python({"low": 0.1, "on_exhausted": "partial"}) == FilterConfig(
        low=0.1, on_exhausted="partial"
    )
    with pytest.raises(pydantic.ValidationError, match="band\n  Unexpected keyword argument"):
        adapter.validate_python({"band": [0.1, 0.9]})
    with pytest.raises(pydantic.ValidationError, match="max_rounds"):
        adapter.validate_python({"max_rounds": 0})
