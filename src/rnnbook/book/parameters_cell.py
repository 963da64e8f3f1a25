"""A chapter's ``parameters`` cell, read without running it: each parameter's default and its
description.

The cell holds only ``name = literal`` lines; the comment that ends a line is what the parameter
means, and the one place that is written (``rnnbook build --list-params`` and the build's error
messages read it from here; :data:`rnnbook.book.params.REGISTRY` holds only types and rules)::

    seq_len = 20  # frames per sequence, T
"""
from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path
from typing import Any

from rnnbook.book.params import ParamError


def _assignments(source: str, where: str) -> list[tuple[str, ast.expr, ast.stmt]]:
    """``(name, value, statement)`` of each line of a ``parameters`` cell (never executed);
    anything but ``name = literal`` lines raises :class:`ParamError`."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParamError(f"{where}: parameters cell is not valid Python: {exc}") from None
    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out.append((node.targets[0].id, node.value, node))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out.append((node.target.id, node.value, node))
        else:
            raise ParamError(
                f"{where}: the parameters cell may only hold `name = literal` lines, found: "
                f"{ast.unparse(node)!r}"
            )
    return out


def parse_parameters_source(source: str, where: str = "<parameters cell>") -> dict[str, Any]:
    """Names and literal defaults assigned in a ``parameters`` cell (never executed)."""
    out: dict[str, Any] = {}
    for name, value, _ in _assignments(source, where):
        try:
            out[name] = ast.literal_eval(value)
        except ValueError:
            raise ParamError(f"{where}: default of {name!r} must be a literal, got {ast.unparse(value)!r}") from None
    return out


def parameter_descriptions(source: str, where: str = "<parameters cell>") -> dict[str, str]:
    """Each parameter's description: the comment ending its line in a ``parameters`` cell
    (``seq_len = 20  # frames per sequence, T`` -> ``"frames per sequence, T"``); ``""`` for a
    parameter without one. Comments on lines of their own are not descriptions."""
    assignments = _assignments(source, where)  # raises on a cell that is not name = literal lines
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    return {name: " ".join(comments[line] for line in range(node.lineno, node.end_lineno + 1) if comments.get(line))
            for name, _, node in assignments}


def notebook_parameters_cell(nb: Any, where: str) -> tuple[int, str]:
    """Index and source of the single cell tagged ``parameters``."""
    hits = [
        (i, c) for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if len(hits) != 1:
        raise ParamError(f"{where}: needs exactly one code cell tagged 'parameters', found {len(hits)}")
    i, cell = hits[0]
    return i, cell.source


def read_notebook(path: str | Path):
    import jupytext

    return jupytext.read(str(path))


def _cell_source(path: str | Path, nb: Any = None) -> str:
    """The source of a chapter file's ``parameters`` cell (``nb``: the file, already read)."""
    return notebook_parameters_cell(read_notebook(path) if nb is None else nb, str(path))[1]


def declared_parameters(path: str | Path, nb: Any = None) -> dict[str, Any]:
    """Parameters (name -> default) declared by a chapter file (.md via jupytext, or .ipynb)."""
    return parse_parameters_source(_cell_source(path, nb), str(path))


def declared_descriptions(path: str | Path, nb: Any = None) -> dict[str, str]:
    """Parameters (name -> description) declared by a chapter file: :func:`parameter_descriptions`
    of its ``parameters`` cell."""
    return parameter_descriptions(_cell_source(path, nb), str(path))
