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
The CPU decode step's matrix-vector products, compiled for this CPU.

A decode step reads every weight of the text model once, so on a CPU its
pace is the memory's read bandwidth. ATen's products at one row did not
keep up with it on the project's 2-core CPU: they streamed bf16 weights at
~19 GB/s and int8 at 14-24, gemv.c at ~28 and ~25 (one quiet run; a
repeated sum over 1 GiB read at ~30); int8 x bf16 it sums in 16-bit
fixed point where the CPU has byte dot products (VNNI). gemv.c is plain C
that the machine's C compiler builds once with ``-march=native`` (AVX-512,
AVX2 or NEON, whatever this CPU has) into a per-user cache, as
torch.compile's C++ backend does. It
runs in torch's OpenMP pool: pip's torch ships the libgomp it links to, and
the loader gives gemv.c that same library (one soname). Without a
compiler, or where the build fails, ATen's kernels decode as before and
``status()`` says why.

No code is fetched or generated: the source is the package's gemv.c, and
the cache key is its hash with the compiler, the flags and the CPU's.
"""

import ctypes
import hashlib
import os
from pathlib import Path
import shlex
import subprocess
import tempfile
import threading
from typing import Optional

import torch

SOURCE = Path(__file__).with_name('gemv.c')
# Reassociation lets the compiler vectorize the sums (not -ffast-math: with
# GCC before 13 it links crtfastmath into a shared library too, which turns
# on flush-to-zero for the whole process when it loads).
FLAGS = ['-O3', '-march=native', '-fno-math-errno', '-fassociative-math',
         '-fno-signed-zeros', '-fno-trapping-math', '-ffp-contract=fast',
         '-fopenmp', '-shared', '-fPIC']
ACTIVATIONS = {torch.float32: 0, torch.bfloat16: 1}
WEIGHTS = {torch.float32: 0, torch.bfloat16: 1, torch.int8: 2}
# Where gemv.c converts int8 weights to fp32 (no VNNI, or fp32 activations),
# int8 rows longer than this (the FFN's second weight, 8192 wide) stay with
# ATen's _weight_int8pack_mm: on the project's 2-core CPU it read a
# 2048x8192 int8 weight in 0.71 ms where that loop took 0.89 (and 0.76 vs
# 1.22 for ATen at 8192x2048). gemv.c's fixed-point sums (int8 x bf16 with
# VNNI) took 0.66 ms for either shape, ATen 1.09: they take rows up to
# what their int32 sums hold (kosmos_int8_fixed_max_k).
INT8_MAX_ROW = 4096

_lock = threading.Lock()
# Once tried: 'why' (str, what to log) and, where it was built, 'lib': the
# ctypes functions (kosmos_gemv, kosmos_dequantize, the fixed-point row
# limit, kosmos_quantize_rows, kosmos_int32_rows).
_state = {}


def cache_dir():
    """Where built kernels are kept: $KOSMOS_ROS_CACHE or ~/.cache."""
    root = os.environ.get('KOSMOS_ROS_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
        'kosmos_ros')
    return Path(root) / 'kernels'


def _cpu_flags():
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                if line.startswith(('flags', 'Features')):
                    return line
    except OSError:
        pass
    import platform
    return platform.machine() + platform.processor()


def _build():
    compiler = shlex.split(os.environ.get('CC') or 'cc')
    try:
        version = subprocess.run(
            compiler + ['--version'], capture_output=True, text=True,
            timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError('no C compiler (%s: %s)' % (
            compiler[0], error)) from error
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b'\0'.join([
        source, ' '.join(compiler + FLAGS).encode(), version.encode(),
        _cpu_flags().encode()])).hexdigest()[:16]
    folder = cache_dir()
    target = folder / ('gemv-%s.so' % key)
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, partial = tempfile.mkstemp(suffix='.so', dir=folder)
        os.close(handle)
        try:
            done = subprocess.run(
                compiler + FLAGS + [str(SOURCE), '-o', partial],
                capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError('%s could not build gemv.c: %s' % (
                    compiler[0], (done.stderr or done.stdout).strip()[-300:]))
            os.replace(partial, target)  # whole or not at all
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    library = ctypes.CDLL(str(target))
    function = library.kosmos_gemv
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    function.argtypes = [pointer, pointer, ctypes.c_int, pointer,
                         ctypes.c_int, pointer, pointer, size, size,
                         ctypes.c_int]
    function.restype = ctypes.c_int
    dequantize = library.kosmos_dequantize
    dequantize.argtypes = [pointer, pointer, pointer, size, size, ctypes.c_int]
    dequantize.restype = None
    fixed = library.kosmos_int8_fixed_max_k
    fixed.argtypes = []
    fixed.restype = size
    quantize = library.kosmos_quantize_rows
    quantize.argtypes = [pointer, pointer, pointer, pointer, size, size,
                         ctypes.c_float, ctypes.c_int]
    quantize.restype = size
    rescale = library.kosmos_int32_rows
    rescale.argtypes = [pointer] * 6 + [size, size, ctypes.c_int]
    rescale.restype = ctypes.c_int
    return (function, dequantize, fixed(), quantize, rescale), target


def status():
    """Build (once per process) and return (ready, what to log)."""
    with _lock:
        if not _state:
            if os.environ.get('KOSMOS_ROS_CPU_KERNEL', '1') == '0':
                _state['why'] = 'off (KOSMOS_ROS_CPU_KERNEL=0)'
            else:
                try:
                    _state['lib'], target = _build()
                    _state['why'] = 'compiled for this CPU (%s)%s' % (
                        target, ', int8 x bf16 in 16-bit fixed point'
                        if _state['lib'][2] else '')
                except (OSError, RuntimeError,
                        subprocess.SubprocessError) as error:
                    _state['why'] = str(error)
        return 'lib' in _state, _state['why']


def _int8_max_row(activations):
    """Return the longest int8 row gemv.c takes (fixed-point sums: longer)."""
    fixed = _state['lib'][2] if activations == torch.bfloat16 else 0
    return max(fixed, INT8_MAX_ROW)


def applies(rows, weight, scales=None, bias=None):
    """
    Whether gemv() takes this product: one stream's CPU decode step.

    Several rows (a batch of streams, a prefill, the vision tower) stay
    with ATen/oneDNN, whose GEMMs reuse each weight across rows; so does
    anything autograd would have to differentiate.
    """
    if torch.is_grad_enabled() and (rows.requires_grad or
                                    weight.requires_grad):
        return False  # no backward: inference only
    # (The shapes too: the C code trusts them.)
    return ('lib' in _state and rows.device.type == 'cpu' and
            rows.dim() == 2 and rows.shape[0] == 1 and weight.dim() == 2 and
            rows.shape[1] == weight.shape[1] and
            rows.dtype in ACTIVATIONS and weight.dtype in WEIGHTS and
            (weight.dtype != torch.int8 or
             weight.shape[1] <= _int8_max_row(rows.dtype)) and
            weight.is_contiguous() and weight.device.type == 'cpu' and
            all(extra is None or (extra.dtype == rows.dtype and
                                  extra.shape == weight.shape[:1] and
                                  extra.is_contiguous() and
                                  extra.device.type == 'cpu')
                for extra in (scales, bias)))


def gemv(rows, weight, scales=None, bias=None):
    """
    Return ``(rows @ weight.T) * scales + bias`` in rows' dtype.

    rows: [1, K] fp32 or bf16; weight: [N, K] fp32, bf16 or int8, rows
    contiguous; scales and bias: [N] in rows' dtype, or None. Sums in fp32.
    Only where applies() says so; under torch.compile, the custom operator
    ``kosmos_ros::gemv`` (product() picks).
    """
    rows = rows.contiguous()
    out = torch.empty(1, weight.shape[0], dtype=rows.dtype)
    failed = _state['lib'][0](
        rows.data_ptr(), out.data_ptr(), ACTIVATIONS[rows.dtype],
        weight.data_ptr(), WEIGHTS[weight.dtype],
        None if scales is None else scales.data_ptr(),
        None if bias is None else bias.data_ptr(),
        weight.shape[0], weight.shape[1], torch.get_num_threads())
    if failed:
        raise MemoryError('gemv.c: cannot allocate its fp32 row')
    return out


def dequantize_into(weight, scales, out):
    """
    Fill ``out`` with ``weight * scales[:, None]`` (int8 rows, bf16 scales).

    One vectorized pass into a buffer the caller reuses: ATen's
    ``weight.to(bf16) * scales`` makes two passes and, for a whole FFN
    weight, a 32 MiB tensor whose pages fault in at every call. Returns
    False (nothing done) where gemv.c is not built or under torch.compile.
    """
    if 'lib' not in _state or torch.compiler.is_compiling() or not (
            weight.dtype == torch.int8 and scales.dtype == torch.bfloat16 and
            out.dtype == torch.bfloat16 and out.shape == weight.shape and
            weight.device.type == 'cpu' and weight.is_contiguous() and
            scales.is_contiguous() and out.is_contiguous()):
        return False
    _state['lib'][1](weight.data_ptr(), scales.data_ptr(), out.data_ptr(),
                     weight.shape[0], weight.shape[1],
                     torch.get_num_threads())
    return True


def quantize_rows(rows, threshold):
    """
    LLM.int8's activations: ``rows`` (bf16 [M, K]) as int8 for _int_mm.

    Returns (int8 [M, K], fp32 row scales [M, 1], outlier columns [K] as
    bool), the outlier columns (largest magnitude >= threshold) written 0; or
    None where gemv.c is not built, the rows are not bf16 on the CPU, or
    they hold NaN or inf (floating point then carries them).
    """
    if 'lib' not in _state or torch.compiler.is_compiling() or not (
            rows.dtype == torch.bfloat16 and rows.device.type == 'cpu' and
            rows.dim() == 2):
        return None
    rows = rows.contiguous()
    quantized = torch.empty(rows.shape, dtype=torch.int8)
    scales = torch.empty(rows.shape[0], 1, dtype=torch.float32)
    outliers = torch.empty(rows.shape[1], dtype=torch.bool)
    count = _state['lib'][3](
        rows.data_ptr(), quantized.data_ptr(), scales.data_ptr(),
        outliers.data_ptr(), rows.shape[0], rows.shape[1], float(threshold),
        torch.get_num_threads())
    if count == -2:
        raise MemoryError('gemv.c: cannot allocate its column maxima')
    return None if count < 0 else (quantized, scales, outliers)


def int32_rows(sums, row_scales, col_scales, extra=None, bias=None):
    """
    Return ``sums * row_scales * col_scales + extra + bias`` in bf16.

    sums: int32 [M, N] (an int8 GEMM's), row_scales fp32 [M, 1],
    col_scales and bias bf16 [N], extra fp32 [M, N] or None. Only after
    quantize_rows() returned rows (gemv.c is built).
    """
    sums = sums.contiguous()
    out = torch.empty(sums.shape, dtype=torch.bfloat16)
    pointers = [None if t is None else t.contiguous() for t in (
        row_scales, col_scales, extra, bias)]
    failed = _state['lib'][4](
        sums.data_ptr(), *[None if t is None else t.data_ptr()
                           for t in pointers],
        out.data_ptr(), sums.shape[0], sums.shape[1], torch.get_num_threads())
    if failed:
        raise MemoryError('gemv.c: cannot allocate its scale rows')
    return out


@torch.library.custom_op('kosmos_ros::gemv', mutates_args=())
def compiled_gemv(rows: torch.Tensor, weight: torch.Tensor,
                  scales: Optional[torch.Tensor] = None,
                  bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """gemv() as an operator torch.compile keeps whole in its graph."""
    return gemv(rows, weight, scales, bias)


@compiled_gemv.register_fake
def _(rows, weight, scales=None, bias=None):
    return rows.new_empty(1, weight.shape[0])


def product(rows, weight, scales=None, bias=None):
    """gemv() eagerly, the custom operator while torch.compile traces."""
    if torch.compiler.is_compiling():
        return compiled_gemv(rows, weight, scales, bias)
    return gemv(rows, weight, scales, bias)


class GemvLinear(torch.nn.Module):
    """A float linear layer whose one-row products run in gemv.c."""

    def __init__(self, linear):
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.in_features = linear.in_features
        self.out_features = linear.out_features

    def forward(self, hidden):
        """``hidden @ W.T + bias``; gemv.c for a decode step on the CPU."""
        rows = hidden.reshape(-1, self.in_features)
        if self.weight.dtype != rows.dtype or not applies(
                rows, self.weight, bias=self.bias):
            return torch.nn.functional.linear(hidden, self.weight, self.bias)
        out = product(rows, self.weight, bias=self.bias)
        return out.reshape(*hidden.shape[:-1], self.out_features)

    def extra_repr(self):
        """Shown by print(model)."""
        return 'in_features=%d, out_features=%d, bias=%s, gemv.c' % (
            self.in_features, self.out_features, self.bias is not None)


def use_gemv(text_model):
    """
    Give the text decoder's float linears and lm_head gemv.c products.

    Returns how many were replaced; none where the kernel is not ready.
    """
    if not status()[0]:
        return 0
    count = 0
    for parent in list(text_model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, GemvLinear(child))
                count += 1
    return count
