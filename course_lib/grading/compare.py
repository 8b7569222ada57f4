"""Compare a learner's result with the expected one and describe the first difference in words.

Used by :mod:`course_lib.grading.checker`. Tensors must match in shape, dtype and values (NaN must stay NaN,
finite values must stay finite); numbers within tolerance; tuples, lists, NamedTuples and dicts
element by element. Every mismatch becomes one short sentence a learner can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["compare", "describe"]


# --------------------------------------------------------------------------------------------


def describe(value: Any, limit: int = 8) -> str:
    """A compact, one-line description of a value for feedback messages."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= limit:
            flat = value.detach().flatten()
            if value.is_floating_point():
                data = [round(float(x), 5) for x in flat.float().tolist()]
            else:
                data = flat.tolist()
            if value.dim() == 0:
                return f"tensor({data[0]})"
            if value.dim() == 1:
                return f"tensor({data})"
            return f"tensor of shape {tuple(value.shape)} {data}"
        return f"{str(value.dtype).replace('torch.', '')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        if value.size <= limit:
            return f"array({np.round(value.astype(float), 5).tolist()})"
        return f"{value.dtype} array of shape {value.shape}"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe(v, 4)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)) and len(value) <= limit:
        inner = ", ".join(describe(v, 4) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, torch.nn.Module):
        return f"a {type(value).__name__} module"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _compare_arrays(expected: torch.Tensor, got: torch.Tensor, atol: float, rtol: float) -> str | None:
    if tuple(got.shape) != tuple(expected.shape):
        return f"expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}"
    if got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype}, got dtype {got.dtype}"
    if expected.numel() == 0:
        return None
    exp = expected.detach().cpu()
    out = got.detach().cpu()
    if exp.dtype == torch.bool or not (exp.is_floating_point() or exp.is_complex()):
        wrong = (exp != out).flatten().nonzero()
    else:
        bad_out = ~torch.isfinite(out) & torch.isfinite(exp)
        if bad_out.any():
            idx = int(bad_out.flatten().nonzero()[0])
            kind = "NaN" if torch.isnan(out.flatten()[idx]) else "inf"
            return f"got {kind} at flat index {idx} where {float(exp.flatten()[idx]):.6g} was expected"
        close = torch.isclose(out.double(), exp.double(), rtol=rtol, atol=atol, equal_nan=True)
        wrong = (~close).flatten().nonzero()
    if len(wrong) == 0:
        return None
    idx = int(wrong[0])
    e, g = exp.flatten()[idx].item(), out.flatten()[idx].item()
    where = f" (first difference at flat index {idx}: expected {e:.6g}, got {g:.6g})" if exp.numel() > 1 else ""
    return f"expected {describe(expected)}, got {describe(got)}{where}"


def compare(expected: Any, got: Any, atol: float = 1e-5, rtol: float = 1e-4, path: str = "") -> str | None:
    """Return ``None`` if ``got`` matches ``expected``, else a sentence saying what differs.

    Tensors must match in shape, dtype and values (NaN must stay NaN, finite values must stay
    finite); numbers within tolerance; tuples, lists and dicts element by element.
    """
    where = f"in {path}: " if path else ""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{where}expected a torch.Tensor, got {type(got).__name__} {describe(got)}"
        problem = _compare_arrays(expected, got, atol, rtol)
        return None if problem is None else where + problem
    if isinstance(expected, np.ndarray):
        if not isinstance(got, np.ndarray):
            return f"{where}expected a numpy array, got {type(got).__name__} {describe(got)}"
        if got.dtype != expected.dtype:
            return f"{where}expected dtype {expected.dtype}, got dtype {got.dtype}"
        problem = _compare_arrays(torch.from_numpy(expected.copy()), torch.from_numpy(got.copy()), atol, rtol)
        return None if problem is None else where + problem
    if isinstance(expected, bool):
        if not isinstance(got, (bool, np.bool_)) and not (isinstance(got, torch.Tensor) and got.numel() == 1):
            return f"{where}expected a bool, got {type(got).__name__} {describe(got)}"
        return None if bool(got) == expected else f"{where}expected {expected}, got {bool(got)}"
    if _is_number(expected):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not _is_number(got):
            return f"{where}expected a number, got {type(got).__name__} {describe(got)}"
        e, g = float(expected), float(got)
        if math.isnan(e) and math.isnan(g):
            return None
        if not math.isfinite(g) and math.isfinite(e):
            return f"{where}expected {e:.6g}, got {g}"
        return None if math.isclose(g, e, rel_tol=rtol, abs_tol=atol) else f"{where}expected {e:.6g}, got {g:.6g}"
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return f"{where}expected a dict with keys {sorted(expected)}, got {type(got).__name__}"
        missing = [k for k in expected if k not in got]
        if missing:
            return f"{where}the result is missing the key(s) {missing}"
        for key in expected:
            problem = compare(expected[key], got[key], atol, rtol, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"{where}expected a {type(expected).__name__} of {len(expected)} items, got {type(got).__name__}"
        if len(got) != len(expected):
            return f"{where}expected {len(expected)} items, got {len(got)}"
        names = getattr(expected, "_fields", None)
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            label = f"{path}.{names[i]}" if names else f"{path}[{i}]"
            problem = compare(e, g, atol, rtol, label.lstrip("."))
            if problem:
                return problem
        return None
    if expected is None:
        return None if got is None else f"{where}expected None, got {describe(got)}"
    return None if got == expected else f"{where}expected {describe(expected)}, got {describe(got)}"
