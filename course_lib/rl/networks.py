"""Small MLP policies and value functions for the control lessons (01-03).

Initialisation follows the PPO implementation-details study (and CleanRL): orthogonal weights with
gain √2 in hidden layers, zero biases, gain 0.01 on the policy's output layer (so the initial
policy is close to uniform) and gain 1 on the value output layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["layer_init", "mlp", "PolicyNet", "ValueNet", "count_parameters"]


def layer_init(layer: nn.Linear, gain: float = math.sqrt(2.0), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weight init with ``gain`` and a constant bias; returns the same layer."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, output_gain: float = 1.0,
        activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear → activation → ... → Linear with orthogonal init. Shapes: ``(B, in_dim)`` → ``(B, out_dim)``."""
    for name, size in (("in_dim", in_dim), ("out_dim", out_dim), *((f"hidden[{i}]", h) for i, h in enumerate(hidden))):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be a positive int, got {size!r}")
    layers: list[nn.Module] = []
    last = in_dim
    for size in hidden:
        layers += [layer_init(nn.Linear(last, size)), activation()]
        last = size
    layers.append(layer_init(nn.Linear(last, out_dim), gain=output_gain))
    return nn.Sequential(*layers)


class PolicyNet(nn.Module):
    """A categorical policy: observations ``(B, D)`` → action logits ``(B, A)``."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, n_actions, output_gain=0.01)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class ValueNet(nn.Module):
    """A state-value function V(s): observations ``(B, D)`` → values ``(B,)``."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, output_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters P."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
