"""How much memory a training step needs: parameters, gradients, optimizer state and the step's peak.

Shared by both halves of the course (a lesson compares PPO-RLHF, which holds a policy, a reference
and a critic, with DPO and GRPO, which hold fewer models).

* :func:`parameter_bytes`, :func:`gradient_bytes`, :func:`optimizer_state_bytes`: exact sums of
  ``numel × element_size`` of the tensors a model or an optimizer holds (each tensor counted once,
  so a tied embedding or a model passed twice is not counted twice).
* :func:`peak_training_memory`: runs one step and measures the **peak increase** of tensor memory
  during it, above what was allocated when the step started:

  - CUDA: ``torch.cuda.reset_peak_memory_stats`` before, then ``max_memory_allocated −
    memory_allocated(at the start)``: the caching allocator's own count of bytes in live tensors.
  - CPU: ``torch.profiler.profile(profile_memory=True)`` records every allocation and free of the
    CPU allocator as a ``[memory]`` event with its signed size in bytes. The running sum of those
    sizes, in time order, is the memory the step added; its maximum is the peak. (We read the raw
    events rather than ``export_memory_timeline``, which is deprecated in torch 2.13 and only
    categorises, it does not count more.) Frees of tensors that existed before the step (e.g. old
    gradients dropped by ``zero_grad(set_to_none=True)``) lower the running sum, so the number is
    the step's *extra* memory, comparable with the CUDA one.

  Both count tensor storage only (what the allocator hands out, rounded as it rounds: CUDA to
  512-byte blocks), not the allocator's cache, the Python objects, or the CUDA context.
* :func:`memory_table`: a small aligned text table of named byte counts, for a lesson's printout.

A rule of thumb to check the numbers against: with Adam in fp32, parameters + gradients + optimizer
state are 4 × the parameter bytes; the rest of the peak is activations kept for backward and
temporaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MemoryReport", "parameter_bytes", "gradient_bytes", "optimizer_state_bytes", "peak_training_memory",
           "format_bytes", "memory_table"]


def _tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Sum of numel × element_size over distinct tensors (by identity)."""
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def _check_models(models: tuple[nn.Module, ...]) -> None:
    for index, model in enumerate(models):
        if not isinstance(model, nn.Module):
            raise ValueError(f"models[{index}] must be a torch.nn.Module, got {type(model).__name__}")


def parameter_bytes(*models: nn.Module) -> int:
    """Bytes of every parameter of ``models``, each parameter counted once (tied weights too)."""
    _check_models(models)
    return _tensor_bytes(p for model in models for p in model.parameters())


def gradient_bytes(*models: nn.Module) -> int:
    """Bytes of the ``.grad`` tensors the parameters of ``models`` hold now (0 before a backward)."""
    _check_models(models)
    params = {id(p): p for model in models for p in model.parameters()}.values()
    return _tensor_bytes(p.grad for p in params if p.grad is not None)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in ``optimizer.state``: for Adam/AdamW, ``exp_avg`` and ``exp_avg_sq``
    (2 × the parameter bytes) plus one ``step`` scalar per parameter tensor. 0 before the first step
    (torch creates the state lazily)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return _tensor_bytes(value for state in optimizer.state.values() for value in state.values()
                         if isinstance(value, torch.Tensor))


@dataclass(frozen=True)
class MemoryReport:
    """What :func:`peak_training_memory` measured for one step."""

    device: str
    """Where it was measured, e.g. ``"cpu"`` or ``"cuda:0"``."""
    peak_bytes: int
    """The highest tensor memory during the step minus the tensor memory at its start (≥ 0)."""
    retained_bytes: int
    """Tensor memory at the end minus at the start: what the step left allocated (new gradients and
    optimizer state on a first step; about 0 on a later one). Negative if it freed more than it kept."""
    start_bytes: int | None
    """Tensor memory already allocated on the device when the step started (CUDA only; the CPU
    profiler sees only what happens while it runs, so None there)."""
    method: str
    """How it was measured, in words."""


def _cuda_peak(step_fn: Callable[[], None], device: torch.device) -> MemoryReport:
    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step_fn()
    torch.cuda.synchronize(device)
    peak, end = torch.cuda.max_memory_allocated(device), torch.cuda.memory_allocated(device)
    return MemoryReport(str(device), max(peak - start, 0), end - start, start,
                        "torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus memory_allocated "
                        "at the start")


def _cpu_peak(step_fn: Callable[[], None]) -> MemoryReport:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step_fn()
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        raise RuntimeError("the torch profiler returned no results; peak_training_memory needs torch >= 2.0")
    events = sorted((event.start_ns(), event.nbytes()) for event in results.events()
                    if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU)
    running = peak = 0
    for _, nbytes in events:  # signed sizes: + allocation, − free
        running += nbytes
        peak = max(peak, running)
    return MemoryReport("cpu", peak, running, None,
                        "torch.profiler profile_memory=True: running sum of the CPU allocator's allocation "
                        "and free events, in time order")


def peak_training_memory(step_fn: Callable[[], None], device: torch.device | str | None = None) -> MemoryReport:
    """Run ``step_fn()`` once and report the peak tensor memory it added (see the module docstring).

    ``device`` is where the step's tensors live: ``"cpu"``, ``"cuda"`` or ``"cuda:k"``; None takes the
    course's device (:func:`course_lib.runtime.choose_device`, which honours ``COURSE_DEVICE``). Run
    one step before measuring if the first one differs (Adam creates its state on its first step).
    On CPU the profiler slows the step down (about 1-2 s of start-up, then a few µs per operator).
    """
    if not callable(step_fn):
        raise ValueError(f"step_fn must be a callable taking no arguments, got {type(step_fn).__name__}")
    if device is None:
        from course_lib.runtime import choose_device

        device = choose_device()[0]
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device or its name, got {device!r}: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device} asks for CUDA, but torch sees no CUDA GPU")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return _cuda_peak(step_fn, device)
    if device.type == "cpu":
        return _cpu_peak(step_fn)
    raise ValueError(f"peak_training_memory measures on 'cpu' or 'cuda' devices, got {device.type!r}")


def format_bytes(num_bytes: int | float) -> str:
    """``1536`` → ``"1.50 KiB"``: binary units, two decimals (``"12 B"`` below 1 KiB)."""
    value = float(num_bytes)
    if abs(value) < 1024:
        return f"{int(value)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "TiB":
            break
    return f"{value:.2f} {unit}"


def memory_table(entries: Mapping[str, int | float | None], title: str = "memory") -> str:
    """An aligned two-column text table, one row per entry: ``name  1.50 MiB``.

    ``entries`` maps a row name to bytes (an int or float; None rows are shown as "n/a").
    """
    if not isinstance(entries, Mapping) or not entries:
        raise ValueError("entries must be a non-empty mapping of row name to bytes")
    cells = [(str(name), "n/a" if value is None else format_bytes(value)) for name, value in entries.items()]
    width = max(len(title), *(len(name) for name, _ in cells))
    size_width = max(len("bytes"), *(len(size) for _, size in cells))
    lines = [f"{title:<{width}}  {'bytes':>{size_width}}", f"{'-' * width}  {'-' * size_width}"]
    lines += [f"{name:<{width}}  {size:>{size_width}}" for name, size in cells]
    return "\n".join(lines)
