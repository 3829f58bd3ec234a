# Copyright 2026 The kosmos_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
Weight-only int8 (``quantization: int8wo``): int8 weights, bf16 arithmetic.

Decoding one token reads every weight of the text model once, so on a CPU
the memory's read bandwidth sets its pace: int8 weights halve bf16's bytes.
Each output row keeps one scale (symmetric, absmax / 127; no calibration),
and activations stay in bf16, so only the weights are rounded. On the CPU
one stream's step runs in gemv.c (cpu_gemv.py) where it could be built,
else in ATen's ``_weight_int8pack_mm``; both read the int8 rows directly
(ATen's fast path is bf16 activations: with fp32 or fp16 it ran 10-15x
slower here, hence bf16 only). Elsewhere it is gpt-fast's formulation,
``linear(x, w.to(x.dtype)) * scales``, which torch.compile fuses into one
kernel on a GPU.

Quantized at load, from the checkpoint's own weights; nothing is written.
int8wo converts the text decoder's linears and lm_head only: the vision
tower and the projection run once per frame on hundreds of rows, where int8
weights alone save no time (``GEMM_ROWS``) and cost accuracy. ``w8a8``
(the CPU's) also converts the vision encoder's linears and multiplies many
rows in int8 (``Int8Linear._int8_mm``): there int8 arithmetic does save
time, at the cost of rounding the activations too.
"""

import torch

from . import cpu_gemv

QMAX = 127
# From this many rows on (a prefill, the vision tower) the product is a GEMM
# over weights dequantized to bf16 a chunk at a time: measured at 70 rows on
# the project's 2-core CPU, 11 ms for an 8192x2048 FFN weight vs 18 ms in the
# int8 GEMV kernel (bf16's own GEMM: 6.5); below it (a decode step, a batch
# of up to 8 streams) the int8 kernel reads half of bf16's bytes.
GEMM_ROWS = 32
# bf16 weights made per GEMM: 1024 rows of 2048. Measured at 72 rows, one
# thread, an 8192x2048 FFN weight: 17 ms with gemv.c's dequantization into
# this reused buffer, 23 with ATen's two passes, 15 for bf16 weights.
CHUNK_BYTES = 4 << 20
# lm_head (65k vocabulary rows x 2048) is int8 too: in bf16 its GEMV took
# ~18 ms of a ~110 ms token on the project's 2-core CPU, in int8 ~8, and on
# random full-size weights it moved the logit error vs fp32 from 0.031 to
# 0.032 with the same first tokens. The embedding table it is tied to stays
# in bf16 (a step reads one row of it).
QUANTIZE_LM_HEAD = True


# LLM.int8's outlier threshold (bitsandbytes' default, llm_int8_threshold):
# in w8a8's int8 GEMMs an activation column reaching it stays in floating
# point. On random full-size weights ~2 columns of 1024-8192 per product.
OUTLIER_THRESHOLD = 6.0


class Int8Linear(torch.nn.Module):
    """
    A linear layer with int8 weights and a bf16 scale per output row.

    With ``int8_compute`` (quantization w8a8) products of many rows run as
    int8 GEMMs, LLM.int8's way: activations rounded to int8 per row, the
    outlier columns multiplied in fp32 beside them.
    """

    def __init__(self, linear, int8_compute=False):
        super().__init__()
        self.int8_compute = int8_compute
        weight = linear.weight.detach().float()
        dtype = linear.weight.dtype
        exact = weight.abs().amax(dim=1).clamp(min=1e-12) / QMAX
        # The scale as the kernel reads it (in dtype), rounded up so that
        # no row's largest weight passes QMAX: each weight is then within
        # half a step of the value the kernel multiplies by.
        scales = exact.to(dtype)
        scales = torch.where(scales.float() < exact, torch.nextafter(
            scales, torch.full_like(scales, float('inf'))), scales)
        quantized = torch.round(weight / scales.float()[:, None]).clamp(
            -QMAX, QMAX)
        # Parameters (not buffers) so that .to(), the memory count and the
        # release of a deactivated model treat them as the model's weights.
        self.weight = torch.nn.Parameter(quantized.to(torch.int8),
                                         requires_grad=False)
        self.scales = torch.nn.Parameter(scales, requires_grad=False)
        self.bias = linear.bias
        self.in_features = linear.in_features
        self.out_features = linear.out_features

    def dequantized(self):
        """Return the weight these int8 values and scales stand for (fp32)."""
        return self.weight.float() * self.scales.float()[:, None]

    def forward(self, hidden):
        """``hidden @ W.T (+ bias)`` with W read as int8."""
        rows = hidden.reshape(-1, self.in_features)
        bias = self.bias
        if rows.shape[0] >= GEMM_ROWS:
            out = self._int8_mm(rows) if self.int8_compute else None
            if out is None:
                out = self._dequantized_mm(rows)
            else:
                bias = None  # added before the output's rounding
        elif cpu_gemv.applies(rows, self.weight, self.scales, bias):
            out, bias = cpu_gemv.product(rows, self.weight, self.scales,
                                         bias), None
        elif rows.device.type == 'cpu':
            out = torch.ops.aten._weight_int8pack_mm(
                rows.contiguous(), self.weight, self.scales)
        else:
            out = torch.nn.functional.linear(
                rows, self.weight.to(rows.dtype)) * self.scales
        out = out.reshape(*hidden.shape[:-1], self.out_features)
        return out if bias is None else out + bias

    def _int8_mm(self, rows):
        """
        int8 x int8 GEMM (oneDNN's, VNNI), or None where it cannot run.

        On the project's 2-core CPU (AVX512-VNNI) ``torch._int_mm`` ran the
        vision tower's and a prefill's shapes 1.3-2.2x faster than bf16's
        GEMM. gemv.c rounds the activations and rescales the int32 sums, one
        pass each (in ATen each is ~6 passes, which ate the gain).
        """
        quantized = cpu_gemv.quantize_rows(rows, OUTLIER_THRESHOLD)
        if quantized is None:
            return None
        values, row_scales, outliers = quantized
        extra = None
        if bool(outliers.any()):
            columns = outliers.nonzero().squeeze(1)
            # (Gathered through the transpose: 0.10 vs 0.35 ms for three
            # columns of an 8192x2048 weight.)
            weight = self.weight.t().index_select(0, columns).float() * \
                self.scales.float()
            extra = rows.index_select(1, columns).float() @ weight
        sums = torch._int_mm(values, self.weight.t())
        return cpu_gemv.int32_rows(sums, row_scales, self.scales, extra,
                                   self.bias)

    def _dequantized_mm(self, rows):
        """Multiply by bf16 weights made a cache-sized chunk at a time."""
        parts = []
        chunk = max(1, CHUNK_BYTES // (2 * self.in_features))
        scratch = torch.empty(min(chunk, self.out_features), self.in_features,
                              dtype=rows.dtype) \
            if rows.device.type == 'cpu' else None
        for start in range(0, self.out_features, chunk):
            stop = min(start + chunk, self.out_features)
            weight = None if scratch is None else scratch[:stop - start]
            if weight is None or not cpu_gemv.dequantize_into(
                    self.weight[start:stop], self.scales[start:stop], weight):
                weight = (self.weight[start:stop].to(rows.dtype) *
                          self.scales[start:stop, None].to(rows.dtype))
            parts.append(torch.nn.functional.linear(rows, weight))
        return torch.cat(parts, dim=-1)

    def extra_repr(self):
        """Shown by print(model)."""
        return 'in_features=%d, out_features=%d, bias=%s, int8 weights%s' % (
            self.in_features, self.out_features, self.bias is not None,
            ', int8 GEMMs' if self.int8_compute else '')


def _convert(layers, int8_compute):
    """Replace the linears of ``layers`` with Int8Linear, one at a time."""
    count = 0
    for layer in layers:
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:
                    setattr(parent, name, Int8Linear(child, int8_compute))
                    count += 1
    return count


def quantize_text_model(text_model, int8_compute=False):
    """
    Replace the text decoder's linears with Int8Linear, one at a time.

    One layer's float copy exists at a time, so the peak is the loaded
    model plus one weight. Returns how many linears were converted.
    """
    count = _convert(text_model.model.layers, int8_compute)
    if QUANTIZE_LM_HEAD:
        text_model.lm_head = Int8Linear(text_model.lm_head, int8_compute)
        count += 1
    return count


def quantize_vision_model(vision_model):
    """
    Give the vision tower's encoder int8 weights and int8 GEMMs (w8a8).

    Its 257 rows per image make every product a GEMM, where int8 weights
    only pay with int8 arithmetic; the patch embedding and the projection
    into the text model stay in their dtype. Returns how many converted.
    """
    return _convert(vision_model.model.encoder.layers, True)
