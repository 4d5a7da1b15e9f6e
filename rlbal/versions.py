"""Versions: rlbal's own (`rlbal --version`) and runtime checks of optional integrations.

The core install pins none of the optional stacks (vLLM, Ray, DeepSpeed, TRL: the extras in pyproject.toml).
Code that depends on one of them at a specific version checks it when it runs instead:

    from rlbal.versions import TRL, require
    require(*TRL)   # ImportError naming the installed version, the supported range and the pip command
"""

from __future__ import annotations

from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

# (distribution, supported versions, extra that installs it, why the range is narrow)
TRL = ("trl", ">=1.16,<1.17", "trl", "the TRL integration (examples/trl_prompt_gdro.py) overrides TRL 1.16 internals")


def rlbal_version() -> str:
    """The version of this rlbal (the installed distribution's metadata agrees: pyproject reads it from here)."""
    from rlbal import __version__

    return __version__


def require(dist: str, spec: str, extra: str, why: str) -> str:
    """The installed version of `dist` when it satisfies `spec`; else ImportError with the fix.

    >>> require("numpy", ">=1", "numpy", "arrays") >= "1"
    True
    >>> require("numpy", "<1", "np", "a test")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ImportError: numpy ... is installed but a test needs numpy<1: pip install 'rlbal[np]'
    """
    try:
        installed = metadata.version(dist)
    except metadata.PackageNotFoundError:
        raise ImportError(
            f"{dist} is not installed and {why} needs {dist}{spec}: pip install 'rlbal[{extra}]'"
        ) from None
    if Version(installed) not in SpecifierSet(spec):
        raise ImportError(f"{dist} {installed} is installed but {why} needs {dist}{spec}: pip install 'rlbal[{extra}]'")
    return installed
