"""The build's errors, in a module of their own so that the build's parts (the PDF, the values)
can raise them without importing the build."""
from __future__ import annotations


class BuildError(RuntimeError):
    """The build cannot go on; the message says why."""


class ChapterFailed(BuildError):
    pass
