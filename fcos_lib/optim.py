"""The optimizer, the learning-rate schedule and mixed precision of a training run.

The course trains with SGD (momentum 0.9, weight decay 1e-4) and divides the learning rate
by 10 at 60% and 90% of the run; the paper adds a linear warm-up over the first steps, so
that the randomly initialized head does not blow up under the full learning rate. The
schedule is a pure function of the step (:func:`lr_factor`): a resumed run recomputes it.
The names (``schedule``, ``optimizer``, ``amp``) are checked once, by ``TrainConfig``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from fcos_lib.config import TrainConfig


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The learning rate of step ``step`` (0-based) as a fraction of the base rate.

    Linear warm-up from ``warmup_factor`` to 1 over ``warmup_steps``, times the decay:
    ``"step"`` multiplies by ``gamma`` at each milestone (a fraction of ``steps``),
    ``"cosine"`` follows half a cosine from 1 down to 0 at ``steps``.

    >>> cfg = TrainConfig(steps=100, warmup_steps=10, warmup_factor=0.0, schedule="step",
    ...                   milestones=(0.6, 0.9), gamma=0.1)
    >>> [round(lr_factor(s, cfg), 4) for s in (0, 5, 10, 59, 60, 90)]
    [0.0, 0.5, 1.0, 1.0, 0.1, 0.01]
    """
    warm = 1.0
    if step < cfg.warmup_steps:
        alpha = step / cfg.warmup_steps
        warm = cfg.warmup_factor * (1 - alpha) + alpha
    if cfg.schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    return warm * cfg.gamma ** sum(step >= int(m * cfg.steps) for m in cfg.milestones)


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD with momentum (the course's choice) or AdamW over the trainable parameters.

    On CUDA the fused implementations (one kernel for every parameter) are used.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if params and params[0].device.type == "cuda" else {}
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fused)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **fused)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (``"auto"``, ``"bf16"``, ``"fp16"``, ``"off"``).

    ``"auto"``: bfloat16 on a CUDA GPU that has it (no gradient scaling needed), float16 on
    older GPUs (with a gradient scaler), float32 (None) on CPUs and MPS, where autocast
    does not pay.
    """
    if amp == "auto":
        if device.type != "cuda":
            return None
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
