"""The API reference's duty, checked without building the site: every name of ``llcuda.__all__`` (``__version__``
exempt), and every public method and property of its classes, has a docstring of its own. (That each one is in the
built reference, and the site as a reader sees it, is tests/docs/, run by `nox -s docs`.)"""

from __future__ import annotations

import dataclasses
import types

import llcuda
from llcuda_testkit import apidocs


def test_every_public_name_of_llcuda_has_its_own_docstring() -> None:
    assert apidocs.undocumented(llcuda) == []
    names = apidocs.public_names(llcuda)
    assert "InferenceEngine.load_model" in names and "quick_infer" in names and "__version__" not in names


def test_a_name_without_a_docstring_is_caught() -> None:
    def documented() -> None:
        """Does something."""

    def bare() -> None:
        pass

    @dataclasses.dataclass
    class Plain:  # a dataclass gets its signature as __doc__: that is not documentation
        x: int = 0

    class Engine:
        """An engine."""

        def run(self) -> None:
            """Run."""

        def stop(self) -> None:
            pass

    class Quiet(Exception):
        pass

    fake = types.ModuleType("fake")
    fake.__all__ = ["documented", "bare", "Plain", "Engine", "Quiet", "__version__"]  # type: ignore[attr-defined]
    for name, obj in [("documented", documented), ("bare", bare), ("Plain", Plain), ("Engine", Engine)]:
        setattr(fake, name, obj)
    fake.Quiet = Quiet  # type: ignore[attr-defined]
    fake.__version__ = "1"  # type: ignore[attr-defined]
    assert apidocs.undocumented(fake) == ["bare", "Plain", "Engine.stop", "Quiet"]
    page = '<dt id="fake.documented"></dt><dt id="fake.Engine"></dt><dt id="fake.Engine.run"></dt>'
    assert apidocs.missing_from_reference(fake, page) == ["bare", "Plain", "Engine.stop", "Quiet"]
