"""A tiny named registry: every pluggable choice of rlbal is one (policy losses, advantages, aggregations, KL
estimators and importance corrections in rlbal.algo, rollout engines in rlbal.rollout, rewards in reward).

Registering a name twice raises; looking up an unknown name raises a ValueError that lists the valid names,
so a typo in a config fails at load time with the fix in the message. Iterating gives the names in the order
they were registered; `names()` sorts them. Standard library only: the torch-free layers use it too.

>>> REG = Registry("colour")
>>> @REG.register("red")
... def red() -> str:
...     return "#f00"
>>> REG.get("red")()
'#f00'
>>> REG.get("blue")
Traceback (most recent call last):
...
ValueError: unknown colour 'blue'; valid names: 'red'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> entry; entries are added by the module that defines them (or by a user before the run starts)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {self.valid()}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def valid(self) -> str:
        return ", ".join(repr(n) for n in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
