"""Named-tuple types for strategy parameters and state, importable by name from anywhere.

Numba keys compiled code (and its on-disk cache) on argument types, and a
named tuple's type is its class, which must be importable when a cache is
read back in another process. The class name here spells out its fields
(`Params__alpha__band`), and the module builds any such class on first
access, so the same fields always give the same importable class.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence

_SEP = "__"
_KINDS = ("Params", "State")


def named(kind: str, fields: Sequence[str]) -> type:
    """The tuple class of `kind` ("Params" or "State") with these fields, in this order."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    for f in fields:
        if not f.isidentifier() or _SEP in f or f.startswith("_"):
            raise ValueError(f"{f!r} cannot name a {kind.lower()} field (an identifier without __)")
    name = kind + _SEP + _SEP.join(fields)
    # Once built, the class is a global here: the same class for every session, so Numba
    # reuses the loop it compiled for the first (a new class would be a new type).
    return globals().get(name) or __getattr__(name)


def __getattr__(name: str) -> type:
    kind, sep, rest = name.partition(_SEP)
    if kind not in _KINDS or not sep:
        raise AttributeError(name)
    cls = namedtuple(name, [f for f in rest.split(_SEP) if f])
    cls.__module__ = __name__
    globals()[name] = cls
    return cls
