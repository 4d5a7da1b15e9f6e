"""Registry: closed names, loud duplicates and unknowns."""
import pytest

from rlbal.algo.registry import Registry


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
