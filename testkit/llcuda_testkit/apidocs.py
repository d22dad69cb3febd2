"""What the API reference must hold: every public name of ``llcuda.__all__`` (``__version__`` exempt) with a
docstring of its own, and, for a class, each public method and property it defines; and whether the built
reference page has an entry for each. Used by tests/unit/test_docs.py and tests/docs/."""

from __future__ import annotations

import inspect
import re
from types import ModuleType

EXEMPT = {"__version__"}


def _own_doc(obj: object) -> str | None:
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return None
    # a dataclass without a docstring gets its signature as one: that is not documentation
    if isinstance(obj, type) and doc.startswith(f"{obj.__name__}("):
        return None
    return doc


def public_names(module: ModuleType) -> list[str]:
    """Every documented name: ``Name`` for each export, ``Name.method`` for each public member a class defines."""
    names = []
    for name in getattr(module, "__all__", []):
        if name in EXEMPT:
            continue
        names.append(name)
        obj = getattr(module, name)
        if isinstance(obj, type) and not issubclass(obj, BaseException):
            for member, value in vars(obj).items():
                if member.startswith("_") or not (inspect.isfunction(value) or isinstance(value, property)):
                    continue
                names.append(f"{name}.{member}")
    return names


def undocumented(module: ModuleType) -> list[str]:
    """The public names of ``module`` (see :func:`public_names`) that have no docstring of their own."""
    missing = []
    for dotted in public_names(module):
        obj: object = module
        for part in dotted.split("."):
            obj = vars(obj)[part] if isinstance(obj, type) else getattr(obj, part)
        target = obj.fget if isinstance(obj, property) else obj
        if _own_doc(target) is None:
            missing.append(dotted)
    return missing


def missing_from_reference(module: ModuleType, html: str) -> list[str]:
    """The public names that have no entry (an element with ``id="llcuda.<name>"``) in the built API page."""
    ids = set(re.findall(r'id="([^"]+)"', html))
    return [n for n in public_names(module) if f"{module.__name__}.{n}" not in ids]
