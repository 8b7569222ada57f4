"""Compare a learner's result with the expected one and describe the first difference in words.

Used by :mod:`course_lib.grading.checker`. Tensors must match in shape, dtype and values (NaN must stay NaN,
finite values must stay finite); numbers within tolerance; tuples, lists, NamedTuples and dicts
element by element. Every mismatch becomes one short sentence a learner can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["compare", "describe", "Masked", "Problem", "compare_modules"]


# --------------------------------------------------------------------------------------------


class Masked(NamedTuple):
    """A tensor of which only the positions where ``mask`` is True count.

    ``value`` and ``mask`` have the same shape (or ``mask`` broadcasts to it); positions outside the
    mask (padding, prompt tokens, tokens after EOS) may hold anything, NaN included. Comparing two
    ``Masked`` values checks the full shape and the dtype, then the values inside the expected mask.
    """

    value: Any
    mask: torch.Tensor


class Problem(NamedTuple):
    """What an observer returns when it could not observe what it wanted, as a sentence for the learner
    (e.g. "no gradient reaches `logits`: the output was detached")."""

    message: str


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
        count = sum(p.numel() for p in value.parameters())
        return f"a {type(value).__name__} module ({count} parameters)"
    if isinstance(value, Masked):
        return f"{describe(value.value, limit)} (compared where the mask is set)"
    if isinstance(value, Problem):
        return value.message
    if callable(value) and not isinstance(value, type) and hasattr(value, "__qualname__"):
        return f"the function {value.__qualname__}"  # not its repr, which shows a memory address
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
    if isinstance(got, Problem):
        return where + got.message
    if isinstance(expected, Problem):  # the reference itself could not be observed: a bug in the case
        raise RuntimeError(f"the reference failed its own observation: {expected.message}")
    if isinstance(expected, Masked):
        return _compare_masked(expected, got, atol, rtol, where)
    if isinstance(expected, torch.nn.Module):
        if not isinstance(got, torch.nn.Module):
            return f"{where}expected a model ({type(expected).__name__}), got {type(got).__name__} {describe(got)}"
        problem = compare_modules(expected, got, atol, rtol)
        return None if problem is None else where + problem
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
        problems = [v for v in got.values() if isinstance(v, Problem)]
        if problems:  # an observation that failed says more than the keys it could not fill
            return where + problems[0].message
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


def _compare_masked(expected: Masked, got: Any, atol: float, rtol: float, where: str) -> str | None:
    value = got.value if isinstance(got, Masked) else got
    if not isinstance(value, torch.Tensor):
        return f"{where}expected a torch.Tensor, got {type(value).__name__} {describe(value)}"
    if tuple(value.shape) != tuple(expected.value.shape):
        return f"{where}expected shape {tuple(expected.value.shape)}, got shape {tuple(value.shape)}"
    if value.dtype != expected.value.dtype:
        return f"{where}expected dtype {expected.value.dtype}, got dtype {value.dtype}"
    mask = expected.mask.to(torch.bool).expand_as(expected.value).cpu()
    exp, out = expected.value.detach().cpu(), value.detach().cpu()
    if exp.is_floating_point():
        wrong = ~torch.isclose(out.double(), exp.double(), rtol=rtol, atol=atol, equal_nan=True)
    else:
        wrong = exp != out
    bad = wrong & mask
    if not bad.any():
        return None
    pos = tuple(bad.nonzero()[0].tolist())
    e, g = exp[pos].item(), out[pos].item()
    return (f"{where}at position {pos}, which the mask marks, expected {e:.6g}, got {g:.6g} "
            f"({int(bad.sum())} of {int(mask.sum())} masked positions differ)")


def compare_modules(expected: torch.nn.Module, got: torch.nn.Module, atol: float = 0.0,
                    rtol: float = 0.0) -> str | None:
    """``None`` if both models have the same class, mode, parameters and buffers; else what differs.

    Models are compared by what determines their behaviour, never by identity, so a deep copy of a
    model equals the original and a model returned by the learner can be checked against the one the
    reference returns.
    """
    if type(got) is not type(expected):
        return f"expected a {type(expected).__name__} model, got a {type(got).__name__}"
    if got.training != expected.training:
        mode = "training" if expected.training else "eval"
        return f"expected the model in {mode} mode (model.{'train' if expected.training else 'eval'}())"
    want, have = expected.state_dict(), got.state_dict()
    if list(want) != list(have):
        return f"expected a model with the tensors {list(want)}, got {list(have)}"
    for name, tensor in want.items():
        problem = _compare_arrays(tensor, have[name], atol, rtol)
        if problem is not None:
            return f"the model's `{name}`: {problem}"
    return None
