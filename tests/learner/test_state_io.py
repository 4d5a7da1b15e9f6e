"""Pickle-free state files round-trip optimizer states exactly."""

from __future__ import annotations

import torch

from rlbal.learner.state_io import load_tree, save_tree


def test_adamw_state_round_trips_and_continues_identically(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    for _ in range(3):
        model(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    save_tree(opt.state_dict(), tmp_path, "opt")
    twin = torch.nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())
    opt2 = torch.optim.AdamW(twin.parameters(), lr=0.1)
    opt2.load_state_dict(load_tree(tmp_path, "opt"))
    for m, o in ((model, opt), (twin, opt2)):
        m(x).pow(2).mean().backward()
        o.step()
    assert torch.equal(model.weight, twin.weight) and torch.equal(model.bias, twin.bias)
