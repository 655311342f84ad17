"""Inference copies of a model at another precision or with other CPU kernels (`inference_copy`, `model.stream`).

- "fp32" (the default): the model itself, exact.
- "fp32-onednn": the same fp32 weights and fp32 arithmetic, every `nn.Linear` of the model (ViT, query projection,
  language model, heads) run by oneDNN on a pre-packed copy of its weight (`OneDNNLinear`) when a call has many
  rows (a patch pass, a prompt). On this project's CPU (AMD EPYC, AVX-512) torch's fp32 `nn.Linear` goes to MKL,
  which reaches ~40% of the cores' FMA peak on large products where oneDNN's packed kernels reach ~450 GFLOP/s:
  the patch pass takes ~0.6x as long (`benchmarks/encoder_cost.py` measures both). Results equal fp32's to
  summation order (~1e-6 relative), so the stream still equals the copy's parallel forward to the fp32 tolerance.
  The packed weights are a second copy of every linear weight (~520 MB at full size).
- "fp16" / "int8": the language model's `nn.Linear` layers dynamically quantised
  (`torch.ao.quantization.quantize_dynamic`): "fp16" stores half-precision weights and computes in fp32; "int8"
  stores int8 weights and rounds each call's activations to 8 bits on that call's range, so a stream and a parallel
  forward, whose calls hold different rows, round differently and agree to int8's tolerance.

Every copy is for inference and CPU only; it shares the model's tensors (deepcopy with a memo), so the model given
is never changed, the copy costs only its new weights, and a change to the model's weights is seen by the copy
("fp32-onednn" repacks a changed weight; the quantised layers of "fp16" / "int8" hold their own rounded copies,
made once).
"""

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PRECISIONS", "OneDNNLinear", "inference_copy", "use_onednn_linears"]

PRECISIONS = ("fp32", "fp32-onednn", "fp16", "int8")
_QUANTISED_DTYPES = {"fp16": torch.float16, "int8": torch.qint8}
# Calls of fewer rows (a query batch, a streamed language-model step) stay on `F.linear`: oneDNN gains ~1.3x there
# only while the allocator keeps freed memory, and after a patch pass has freed its layers' outputs, glibc's
# trimming turns each small oneDNN call's scratch buffer into fresh page faults (a query 1.5x slower than MKL's).
MIN_ONEDNN_ROWS = 64
_PACKING_ROWS = 256  # the row count oneDNN packs for; any row count computes the same values


class OneDNNLinear(nn.Module):
    """`nn.Linear` whose inference forward runs oneDNN on a packed copy of its weight, for calls of at least
    `MIN_ONEDNN_ROWS` rows.

    `weight` and `bias` are the given layer's own parameters (shared, so `state_dict` and `.weight.dtype` read as
    before). The packed copy is made at the first large call and made again whenever the weight has changed since
    (an in-place update, `load_state_dict`, a new `.data`), so it never serves stale values; it is not saved,
    pickled or deep-copied (a copy packs its own). A call that needs gradients (the copy's `forward` outside
    `torch.no_grad()`/`inference_mode()` while its parameters require them), or an input that is not fp32 on the
    CPU, takes `F.linear` on the live weight instead.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self._packed, self._packed_from = None, None  # the oneDNN weight and the (storage, version) it was made from

    def packed_weight(self) -> torch.Tensor:
        source = (self.weight.data_ptr(), self.weight._version)
        if self._packed is None or self._packed_from != source:
            self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), _PACKING_ROWS)
            self._packed_from = source
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        few_rows = x.numel() < MIN_ONEDNN_ROWS * self.in_features
        if needs_grad or few_rows or x.dtype != torch.float32 or x.device.type != "cpu":
            return F.linear(x, self.weight, self.bias)
        rows = x.reshape(-1, self.in_features)  # [..., in] -> [R, in]
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed_weight(), self.bias, "none", [], "")  # [R, out]
        return out.view(*x.shape[:-1], self.out_features)

    def __getstate__(self):
        # An mkldnn tensor has no storage to copy or pickle; the copy repacks from its weight at its first call.
        return {**super().__getstate__(), "_packed": None, "_packed_from": None}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def use_onednn_linears(module: nn.Module) -> nn.Module:
    """Swap every `nn.Linear` inside `module` for a `OneDNNLinear` on the same parameters, in place; returns it."""
    for name, child in module.named_children():
        if type(child) is nn.Linear:
            setattr(module, name, OneDNNLinear(child))
        else:
            use_onednn_linears(child)
    return module


def inference_copy(model, precision: str):
    """A copy of `model` for inference at `precision` (one of `PRECISIONS`); "fp32" returns `model` itself.

    Every tensor of `model` is shared, not copied; the copy adds only its packed or quantised weights (full size:
    ~520 MB for "fp32-onednn", packed at each layer's first large call; ~106 MB for "int8", ~212 MB for "fp16";
    1-2 s to make). The copy's `forward` (under `torch.no_grad()` or `inference_mode()`), `generate` and `stream()`
    run at that precision. Its layers have no gradients to train.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}; got {precision!r}")
    if precision == "fp32":
        return model
    if model.device.type != "cpu":
        raise ValueError(f"precision {precision!r} runs on the CPU only; the model is on {model.device}")
    if precision == "fp32-onednn" and not torch.backends.mkldnn.is_available():
        raise ValueError("precision 'fp32-onednn' needs a torch built with oneDNN (torch.backends.mkldnn)")
    # Only the modules are copied; every tensor is shared through deepcopy's memo. The copy's linears are then
    # swapped for new modules built from the shared weights, which are read, never written.
    shared = {id(tensor): tensor for tensor in [*model.parameters(), *model.buffers()]}
    copied = copy.deepcopy(model, memo=shared).eval()
    if precision == "fp32-onednn":
        return use_onednn_linears(copied)
    with warnings.catch_warnings():  # torch marks torch.ao as deprecated in favour of torchao, not installed here
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(
            copied.model.language_model, {nn.Linear}, dtype=_QUANTISED_DTYPES[precision], inplace=True
        )
    return copied
