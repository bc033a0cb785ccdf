"""CUDA autocast's casting rules, applied on CPU: the regression net for what CPU autocast hides.

CPU autocast (``torch.autocast("cpu")``) keeps most ops in bf16, whereas CUDA autocast runs a
documented list of ops in the low precision and another list in float32 (PyTorch's "Autocast op
reference", CUDA section). A network can therefore pass under CPU autocast and fail on its first
GPU: a float32 ``exp`` meeting a half ``scatter`` target, or an fp16 matrix product that overflows.

:class:`EmulatedCudaAutocast` is a ``TorchDispatchMode`` that sees every aten op after the
composite functions are decomposed (as CUDA autocast does, since a decomposed function re-enters
the dispatcher) and casts its floating-point tensor arguments by CUDA's rules:

* low precision (fp16 or bf16): matrix products and convolutions;
* float32: softmax, log_softmax, exp, log, pow (``square`` decomposes to it), layer / group norm,
  norms, sums and the other reductions and transcendental functions of the float32 list;
* the widest input type: the "promote" list (``addcmul``, ``index_put``, ``scatter_add``, ...);
* everything else runs in whatever dtype its inputs have, so a dtype mismatch raises as on a GPU.

Float64 tensors and ops called with an explicit ``dtype=`` are left alone, as autocast does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

__all__ = ["EmulatedCudaAutocast", "LOW_PRECISION_OPS", "FLOAT32_OPS", "PROMOTE_OPS"]

aten = torch.ops.aten

#: CUDA ops that autocast to the low precision (the list's matmul / linear / conv* arrive here as these).
LOW_PRECISION_OPS = {
    aten.mm, aten.bmm, aten.addmm, aten.baddbmm, aten.addbmm, aten.addmv, aten.mv, aten.addr,
    aten.convolution, aten._convolution, aten.conv2d, aten.conv1d, aten.conv3d, aten.linear, aten.matmul,
    aten.prelu, aten._prelu_kernel,
}

#: CUDA ops that autocast to float32 (the reductions and the ops whose range fp16 cannot hold).
FLOAT32_OPS = {
    aten._softmax, aten._log_softmax, aten.softmax, aten.log_softmax,
    aten.exp, aten.expm1, aten.log, aten.log1p, aten.log2, aten.log10,
    aten.pow, aten.reciprocal, aten.rsqrt,
    aten.native_layer_norm, aten.layer_norm, aten.native_group_norm, aten.group_norm,
    aten.norm, aten.linalg_vector_norm, aten.renorm,
    aten.sum, aten.prod, aten.cumsum, aten.cumprod,
    aten.softplus, aten.erfinv, aten.acos, aten.asin, aten.cosh, aten.sinh, aten.tan,
    aten.mse_loss, aten.l1_loss, aten.smooth_l1_loss, aten.cosine_similarity, aten._cdist_forward, aten.dist,
}

#: CUDA ops that run in the widest floating type of their inputs.
PROMOTE_OPS = {aten.addcdiv, aten.addcmul, aten.atan2, aten.cross, aten.linalg_cross, aten.dot, aten.index_put,
               aten.scatter_add, aten.grid_sampler_2d, aten.tensordot}

_HALF = (torch.float16, torch.bfloat16)
_WIDTH = {torch.bfloat16: 0, torch.float16: 0, torch.float32: 1}


class EmulatedCudaAutocast(TorchDispatchMode):
    """``with EmulatedCudaAutocast(torch.float16): model(x)`` runs ``model`` on CPU with the dtypes CUDA
    autocast would give every op. ``counts`` records how many ops were cast each way (a test can
    check the rules really acted)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        if dtype not in _HALF:
            raise ValueError(f"CUDA autocast runs in float16 or bfloat16, not {dtype}.")
        self.dtype = dtype
        self.counts = {"low": 0, "float32": 0, "promote": 0}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        packet = func.overloadpacket
        # In-place and out= variants (mutating schemas) do not autocast; neither do ops given a dtype.
        eligible = not func._schema.is_mutable and kwargs.get("dtype") is None
        if eligible and packet in LOW_PRECISION_OPS:
            args, kwargs = self._cast((args, kwargs), (torch.float32, *_HALF), self.dtype)
            self.counts["low"] += 1
        elif eligible and packet in FLOAT32_OPS:
            args, kwargs = self._cast((args, kwargs), _HALF, torch.float32)
            self.counts["float32"] += 1
        elif eligible and packet in PROMOTE_OPS:
            dtypes = [t.dtype for t in _tensors((args, kwargs)) if t.dtype in _WIDTH]
            if dtypes:
                widest = max(dtypes, key=lambda d: _WIDTH[d])
                args, kwargs = self._cast((args, kwargs), tuple(_WIDTH), widest)
                self.counts["promote"] += 1
        return func(*args, **kwargs)

    @staticmethod
    def _cast(tree: Any, from_dtypes: tuple, to_dtype: torch.dtype) -> Any:
        def cast(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and value.dtype in from_dtypes and value.dtype != to_dtype:
                return value.to(to_dtype)
            return value

        return tree_map(cast, tree)


def _tensors(tree: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    tree_map(lambda v: found.append(v) if isinstance(v, torch.Tensor) else None, tree)
    return found
