"""Observers shared by every lesson's cases: what to look at besides a function's return value.

An observer is called as ``observe(fn, inputs)`` by :func:`course_lib.grading.checker.run_exercise`,
once with the reference and once with the learner's function, and the two observations are
compared. The ones here cover what most exercises need:

- :func:`gradients`: the output and its gradients with respect to chosen inputs. An input listed in
  ``wrt`` must receive a gradient (a detached output fails with "no gradient reaches `x`"); an
  input listed in ``constant`` must receive none (a leak fails with the size of the leak). NaN in a
  gradient fails even where the value itself is fine (``0 * log 0`` in a backward pass).
- :func:`masked`: compare an output only where a mask marks real positions (completion tokens, not
  padding), so a correct function may leave anything, NaN included, elsewhere.
- :func:`stats`: the diagnostics a loss returns beside its value, key by key.

The output the gradient is taken of is a weighted sum with fixed random weights, so a gradient that
is right only for a plain sum (for example a wrong function whose outputs all move together) still
differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from course_lib.grading.compare import Masked, Problem

__all__ = ["Observer", "pick", "gradients", "masked", "stats"]

Observer = Callable[[Callable[..., Any], dict[str, Any]], Any]

Selector = int | str | None


def pick(out: Any, output: Selector) -> Any:
    """The part of a function's result to observe: ``out[output]``, or, with ``None``, the first item of a
    tuple (the loss of ``(loss, stats)``) and the result itself otherwise."""
    if output is None:
        return out[0] if isinstance(out, tuple) and out else out
    try:
        return out[output]
    except (IndexError, KeyError, TypeError):
        return Problem(f"expected a result with item {output!r}, got {type(out).__name__}")


def _weights(like: torch.Tensor, seed: int) -> torch.Tensor:
    if like.dim() == 0:
        return torch.ones((), dtype=like.dtype)
    generator = torch.Generator().manual_seed(seed)
    return (1.0 + torch.rand(like.shape, generator=generator, dtype=torch.float64)).to(like.dtype)


def gradients(wrt: Sequence[str] = (), constant: Sequence[str] = (), output: Selector = None,
              name: str = "output", include_value: bool = True, seed: int = 0) -> Observer:
    """An observer returning the output and d(Σ w·output)/d(input) for every input named.

    Args:
        wrt: inputs that must receive a gradient (policy log-probs, logits, values, parameters).
        constant: inputs that must receive none (targets, advantages, old log-probs, a frozen
            reference's log-probs): their gradient must be exactly 0.
        output: which part of the result (see :func:`pick`); by default a loss out of ``(loss, stats)``.
        name: what the output is called in feedback ("loss", "log-probs").
        include_value: also compare the output itself.
        seed: seed of the fixed random weights w (each in [1, 2)).
    """

    def observe(fn: Callable[..., Any], inputs: dict[str, Any]) -> dict[str, Any]:
        leaves = {}
        call = dict(inputs)
        for key in (*wrt, *constant):
            leaf = inputs[key].detach().clone().requires_grad_(True)
            call[key] = leaves[key] = leaf
        target = pick(fn(**call), output)
        for key, leaf in leaves.items():  # the checker sees only the inputs it passed, not these copies
            if not torch.equal(leaf.detach(), inputs[key]):
                return {name: Problem(f"your function changed its input `{key}` in place; build a new tensor "
                                      f"instead (e.g. `x = x + 1`, not `x += 1`)")}
        if isinstance(target, Problem):
            return {name: target}
        if not isinstance(target, torch.Tensor) or not target.is_floating_point():
            return {name: Problem(f"expected the {name} to be a floating-point tensor, got "
                                  f"{type(target).__name__}")}
        observed: dict[str, Any] = {name: target.detach()} if include_value else {}
        grads: Sequence[torch.Tensor | None] = [None] * len(leaves)
        if target.requires_grad and leaves:
            scalar = (target * _weights(target, seed)).sum()
            grads = torch.autograd.grad(scalar, list(leaves.values()), allow_unused=True)
        for (key, leaf), grad in zip(leaves.items(), grads, strict=True):
            if key in constant:
                observed[f"d {name} / d {key} (must be 0: `{key}` is a constant)"] = (
                    torch.zeros_like(leaf) if grad is None else grad)
            elif grad is None:
                observed[f"d {name} / d {key}"] = Problem(
                    f"no gradient reaches `{key}`: the {name} is detached from it (.detach(), .item(), "
                    f"torch.no_grad() or a round trip through NumPy cut the graph)")
            else:
                observed[f"d {name} / d {key}"] = grad
        return observed

    return observe


def masked(mask: str | torch.Tensor, output: Selector = None) -> Observer:
    """An observer comparing the output only where ``mask`` (an input's name, or a tensor) is True."""

    def observe(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
        target = pick(fn(**inputs), output)
        if isinstance(target, Problem):
            return target
        where = inputs[mask] if isinstance(mask, str) else mask
        return Masked(target, torch.as_tensor(where).to(torch.bool))

    return observe


def stats(keys: Sequence[str], output: Selector = 1) -> Observer:
    """An observer returning the named diagnostics of ``(loss, stats)`` as floats, key by key."""

    def observe(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
        found = pick(fn(**inputs), output)
        if not isinstance(found, Mapping):
            return Problem(f"expected the stats to be a dict with keys {list(keys)}, got {type(found).__name__}")
        missing = [k for k in keys if k not in found]
        if missing:
            return Problem(f"the stats are missing the key(s) {missing}")
        values = {}
        for key in keys:
            value = found[key]
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    return Problem(f"stats[{key!r}] must be one number, got a tensor of shape {tuple(value.shape)}")
                value = value.item()
            values[key] = value
        return values

    return observe
