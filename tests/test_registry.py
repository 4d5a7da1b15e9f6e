"""Registry: loud duplicates and unknowns, registration order when iterated, sorted names."""

import pytest

from rlbal.registry import Registry


def test_register_get_and_names():
    reg = Registry("widget")
    reg.add("b", 2)
    reg.register("a")(1)
    assert reg.get("a") == 1 and reg.get("b") == 2
    assert reg.names() == ("a", "b") and "a" in reg and "c" not in reg


def test_duplicate_name_raises():
    reg = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 2)


def test_unknown_name_lists_valid_names():
    reg = Registry("widget")
    reg.add("b", 2)
    reg.add("a", 1)
    with pytest.raises(ValueError, match="unknown widget 'c'; valid names: 'a', 'b'"):
        reg.get("c")


def test_iteration_keeps_registration_order_and_names_sort():
    reg = Registry("widget")
    for name in ("vllm", "hf", "custom"):
        reg.add(name, name.upper())
    assert list(reg) == ["vllm", "hf", "custom"] and reg.names() == ("custom", "hf", "vllm")
