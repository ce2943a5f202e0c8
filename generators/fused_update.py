"""Gradient clipping, the AdamW step and the EMA of the weights in one pass over the parameters (a Triton kernel).

Eager, the three read and write the fp32 weights, gradients, moments and EMA in four passes (the norm, the
clipping's scaling, fused AdamW, the EMA's lerp). One kernel reads each parameter's weight, gradient, moments and
EMA once and writes the four updated ones once; only the gradient norm, which must be complete before any weight
moves, keeps a pass of its own (one eager multi-tensor reduction). For `3dim-64` on an H100 that is 1.95 ms of GPU
time against 4.92 (benchmarks/fused_update.py). The kernel walks all tensors through a table of their addresses,
as multi-tensor apply does, so it compiles once, in seconds, for any model: `torch.compile` fuses the same
element-wise work too, but over the 669 tensors of `3dim-64` it compiled for minutes longer than the model itself.

The arithmetic is `clip_grad_norm_`, then AdamW's (decoupled weight decay, bias corrections from each parameter's
own step count), then `update_ema`. The state stays the optimizer's, in fused AdamW's layout (the step a float32
tensor on the device), so checkpoints, resume and the eager path share it. Tests compare the kernel with the eager
three on the GPU, and on the CPU through Triton's interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

import functools
import logging
import math
import os

import torch

logger = logging.getLogger(__name__)

#: Elements of one tensor per program: 16 per thread with 4 warps.
BLOCK = 2048


def _interpreting() -> bool:
    """Triton's interpreter runs kernels on CPU tensors (the CPU tests); read when a kernel is made."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _kernel(interpreted: bool):
    """The Triton kernel, built for the interpreter or for the GPU (Triton decides when it decorates)."""
    import triton
    import triton.language as tl

    @triton.jit
    def clipped_adamw_ema(chunk_tensors, chunk_starts, numels, addresses, count, clip_coef, lr, weight_decay, beta1,
                          beta2, log_beta1, log_beta2, eps, ema_weight, BLOCK: tl.constexpr):
        chunk = tl.program_id(0)
        tensor = tl.load(chunk_tensors + chunk)
        offsets = tl.load(chunk_starts + chunk) + tl.arange(0, BLOCK)
        mask = offsets < tl.load(numels + tensor)
        as_float = tl.pointer_type(tl.float32)
        # Every address is 16-byte aligned (checked by the caller), so the loads can be vectorised.
        param = tl.multiple_of(tl.load(addresses + tensor).to(as_float), 16) + offsets
        grad = tl.multiple_of(tl.load(addresses + count + tensor).to(as_float), 16) + offsets
        exp_avg = tl.multiple_of(tl.load(addresses + 2 * count + tensor).to(as_float), 16) + offsets
        exp_avg_sq = tl.multiple_of(tl.load(addresses + 3 * count + tensor).to(as_float), 16) + offsets
        ema = tl.multiple_of(tl.load(addresses + 4 * count + tensor).to(as_float), 16) + offsets
        step = tl.load(tl.load(addresses + 5 * count + tensor).to(as_float))  # already counts this update

        g = tl.load(grad, mask=mask) * tl.load(clip_coef)
        m = tl.load(exp_avg, mask=mask)
        m += (1 - beta1) * (g - m)  # lerp(m, g, 1 - beta1), as AdamW
        v = tl.load(exp_avg_sq, mask=mask) * beta2 + (1 - beta2) * g * g
        # 1 - beta^t in float64: in float32 it cancels (1 - 0.999 keeps 4 digits), as eager AdamW's host math does not.
        step = step.to(tl.float64)
        step_size = (lr / (1 - tl.exp(step * log_beta1))).to(tl.float32)
        bias_correction2_sqrt = tl.sqrt(1 - tl.exp(step * log_beta2)).to(tl.float32)
        p = tl.load(param, mask=mask) * (1 - lr * weight_decay)
        p -= step_size * m / (tl.sqrt(v) / bias_correction2_sqrt + eps)
        e = tl.load(ema, mask=mask)
        e += ema_weight * (p - e)
        tl.store(param, p, mask=mask)
        tl.store(exp_avg, m, mask=mask)
        tl.store(exp_avg_sq, v, mask=mask)
        tl.store(ema, e, mask=mask)

    return clipped_adamw_ema


def _dense(tensor: torch.Tensor) -> bool:
    """Its elements fill its memory without gaps, so one flat offset walks tensors of equal strides alike."""
    return tensor.is_contiguous() or tensor.is_contiguous(memory_format=torch.channels_last)


def _aligned(tensor: torch.Tensor) -> bool:
    """At a 16-byte boundary, as the kernel's vector loads assume (allocations are; some views are not)."""
    return tensor.data_ptr() % 16 == 0


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shapes whose elements lie in the same order in memory. Strides of dimensions of size 1 do not count:
    autograd hands on a gradient whose strides differ from its parameter's only there (a 1x1 convolution's
    channels-last weight), and they move no offset."""
    return a.shape == b.shape and all(x == y for x, y, n in zip(a.stride(), b.stride(), a.shape) if n > 1)


def _gradient_problem(grad: torch.Tensor | None, param: torch.Tensor) -> str | None:
    """Why the kernel cannot read `grad` beside `param`, or None."""
    if grad is None:
        return "a parameter without a gradient (AdamW skips it, weight decay included)"
    if grad.dtype != param.dtype or grad.device != param.device or not _same_layout(grad, param):
        return f"a gradient of another dtype, device or layout than its parameter's ({tuple(param.shape)})"
    if not _aligned(grad):
        return "a gradient not at a 16-byte boundary"
    return None


def unusable_reason(params: list[torch.Tensor], emas: list[torch.Tensor]) -> str | None:
    """Why the kernel cannot update these parameters, or None."""
    try:
        import triton  # noqa: F401
    except ImportError as error:
        return f"Triton does not import ({error})"
    device = params[0].device
    if not (device.type == "cuda" or (_interpreting() and device.type == "cpu")):
        return f"parameters on {device}: the kernel runs on CUDA"
    for p, e in zip(params, emas):
        if p.dtype != torch.float32 or e.dtype != torch.float32 or p.device != device or e.device != device:
            return "parameters or EMA weights that are not float32 on one device"
        if not _dense(p) or not _same_layout(p, e) or not (_aligned(p) and _aligned(e)):
            return "parameters and EMA weights of different, non-dense or unaligned layouts"
    return None


class ClippedAdamWEMA:
    """`step(ema_decay)`: clip `model`'s gradients to `max_norm`, take `optimizer`'s AdamW step at its current lr,
    and move `ema` towards the new weights (its buffers copied), in one pass.

    `step` returns False, doing nothing, where the kernel does not apply: for every step (`reason` says why), or for
    this step's gradients (`skipped` says why); the caller then takes the eager steps. `updates` counts the steps
    it took."""

    def __init__(self, model: torch.nn.Module, ema: torch.nn.Module, optimizer: torch.optim.AdamW, max_norm: float):
        group = optimizer.param_groups[0]
        self.params, self.emas = list(model.parameters()), list(ema.parameters())
        same = len(group["params"]) == len(self.params) and all(a is b for a, b in zip(group["params"], self.params))
        if len(optimizer.param_groups) != 1 or group["amsgrad"] or group["maximize"] or not same:
            raise ValueError("ClippedAdamWEMA takes an AdamW over all of the model's parameters, in one group, "
                             "amsgrad and maximize off")
        if [p.shape for p in self.params] != [p.shape for p in self.emas]:
            raise ValueError("the EMA model's parameters do not match the model's")
        self.buffers = list(zip(ema.buffers(), model.buffers()))
        self.optimizer, self.max_norm = optimizer, max_norm
        self.reason = unusable_reason(self.params, self.emas)
        if self.reason is None:
            # Programs: every tensor in chunks of BLOCK elements; chunk i updates tensor chunk_tensors[i].
            device, numels = self.params[0].device, [p.numel() for p in self.params]
            chunks = [(index, start) for index, n in enumerate(numels) for start in range(0, n, BLOCK)]
            self.chunk_tensors = torch.tensor([c[0] for c in chunks], dtype=torch.int32, device=device)
            self.chunk_starts = torch.tensor([c[1] for c in chunks], dtype=torch.int32, device=device)
            self.numels = torch.tensor(numels, dtype=torch.int32, device=device)
        self._addresses, self._table = None, None
        self.updates, self.skipped = 0, None

    def _state(self) -> list[dict[str, torch.Tensor]]:
        """Each parameter's AdamW state, created as fused AdamW creates it on its first step."""
        for p in self.params:
            state = self.optimizer.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return [self.optimizer.state[p] for p in self.params]

    def _address_table(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The int64 addresses of `tensors` on the device, copied there again only when one has changed."""
        addresses = [t.data_ptr() for t in tensors]
        if addresses != self._addresses:
            table = torch.tensor(addresses, dtype=torch.int64)
            if self.params[0].is_cuda:  # from pinned memory, so that the copy does not wait for the GPU
                table = table.pin_memory().to(self.params[0].device, non_blocking=True)
            self._table, self._addresses = table, addresses
        return self._table

    def _skip(self, why: str | None) -> bool:
        """Record why this step cannot run (None: it can); say so once for each new reason."""
        if why and why != self.skipped:
            logger.info("clipping, AdamW and EMA eager this step: %s", why)
        self.skipped = why
        return why is not None

    @torch.no_grad()
    def step(self, ema_decay: float) -> bool:
        if self.reason:
            return False
        grads = [p.grad for p in self.params]
        if self._skip(next(filter(None, map(_gradient_problem, grads, self.params)), None)):
            return False
        states = self._state()
        steps = [state["step"] for state in states]
        if self._skip(next((f"AdamW state whose steps are not float32 tensors on {self.params[0].device} (an "
                            "optimizer that is not fused AdamW)" for s in steps
                            if s.dtype != torch.float32 or s.device != self.params[0].device), None)):
            return False
        table = self._address_table([*self.params, *grads, *[s["exp_avg"] for s in states],
                                     *[s["exp_avg_sq"] for s in states], *self.emas, *steps])
        # As clip_grad_norm_ (whose norm this is): the coefficient clamped to 1, no host synchronisation.
        total_norm = torch.nn.utils.get_total_norm(grads)
        clip_coef = torch.clamp(self.max_norm / (total_norm + 1e-6), max=1.0)
        torch._foreach_add_(steps, 1)
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        _kernel(_interpreting())[(len(self.chunk_tensors),)](
            self.chunk_tensors, self.chunk_starts, self.numels, table, len(self.params), clip_coef, group["lr"],
            group["weight_decay"], beta1, beta2, math.log(beta1), math.log(beta2), group["eps"], 1.0 - ema_decay,
            BLOCK=BLOCK, num_warps=4)
        for ema_buffer, buffer in self.buffers:
            ema_buffer.copy_(buffer)
        self.updates += 1
        return True
