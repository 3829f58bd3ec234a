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
gemv.c, the CPU decode step's products.

What it computes, when it is used, how it is built and cached, and a
machine where it cannot be built.

Its speed is a benchmark's business (``kosmos-ros bench --decode
--full-size``), not a test's.
"""

import os
from pathlib import Path
import stat

from conftest import BOX_PROMPT, make_frame
import pytest

torch = pytest.importorskip('torch', reason='torch is not installed')

from kosmos_ros.model import cpu_gemv  # noqa: E402, I100
from kosmos_ros.model.engine import KosmosEngine  # noqa: E402
from kosmos_ros.model.loading import ModelOptions  # noqa: E402

FLOAT = {'fp32': torch.float32, 'bf16': torch.bfloat16}
WEIGHT = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'int8': torch.int8}


@pytest.fixture(scope='module')
def ready():
    ok, why = cpu_gemv.status()
    if not ok:
        pytest.skip('gemv.c could not be built here: %s' % why)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """Give the test a process that has not built gemv.c, and a cache."""
    monkeypatch.setattr(cpu_gemv, '_state', {})
    monkeypatch.setenv('KOSMOS_ROS_CACHE', str(tmp_path / 'cache'))
    return tmp_path


def compiler_script(folder, body):
    """Write an executable CC that logs its arguments, then runs ``body``."""
    script = folder / 'cc'
    script.write_text('#!/bin/sh\necho "$@" >> %s\n%s\n' % (
        folder / 'cc.log', body))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


# -- what it computes ----------------------------------------------------
@pytest.mark.parametrize('weight_type', sorted(WEIGHT))
@pytest.mark.parametrize('act', sorted(FLOAT))
@pytest.mark.parametrize('extras', ['plain', 'scales+bias'])
@pytest.mark.parametrize('n', [37, 401], ids=['one thread', 'the pool'])
def test_gemv_computes_the_product_it_is_given(ready, weight_type, act,
                                               extras, n):
    torch.manual_seed(0)
    # K not a multiple of the 64-wide loop, N not of the thread split; 401
    # rows pass gemv.c's grain (65,536 weights), 37 stay on one thread.
    k = 64 * 3 + 13
    act = FLOAT[act]
    if weight_type == 'int8':
        weight = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    else:
        weight = torch.randn(n, k).to(WEIGHT[weight_type])
    rows = torch.randn(1, k).to(act)
    scales = bias = None
    if extras != 'plain':
        scales = (torch.rand(n) + 0.5).to(act)
        bias = torch.randn(n).to(act)
    assert cpu_gemv.applies(rows, weight, scales, bias)
    got = cpu_gemv.gemv(rows, weight, scales, bias)
    want = rows.float() @ weight.float().t()
    if scales is not None:
        want = want * scales.float() + bias.float()
    assert got.shape == (1, n) and got.dtype == act
    # fp32 sums either way: equal to fp32 rounding, then one rounding to
    # the activations' dtype (bf16: half a unit in the 8th bit).
    tolerance = 2 ** -8 if act == torch.bfloat16 else 1e-5
    scale = want.abs().max()
    assert ((got.float() - want).abs() <= want.abs() * tolerance +
            scale * 1e-5).all()


def test_bf16_outputs_round_to_nearest_even_and_keep_nan(ready):
    # One weight of 1: the product is x itself, rounded once to bf16.
    weight = torch.ones(1, 1)
    for value in (1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5, 3e38, float('inf')):
        rows = torch.tensor([[value]])
        got = cpu_gemv.gemv(rows.bfloat16(), weight.bfloat16(),
                            bias=torch.zeros(1).bfloat16())
        assert got.float().item() == rows.bfloat16().float().item()
    nan = cpu_gemv.gemv(torch.tensor([[float('nan')]]).bfloat16(),
                        weight.bfloat16())
    assert torch.isnan(nan).all()


@pytest.fixture
def fixed_point(ready):
    """Return the longest int8 row gemv.c sums in fixed point here."""
    longest = cpu_gemv._state['lib'][2]
    if not longest:
        pytest.skip('no byte dot products (AVX512-VNNI) on this CPU: int8 '
                    'rows take the float loop, tested above')
    return longest


def test_int8_fixed_point_sums_are_exact_up_to_the_longest_row(fixed_point):
    # Every weight +-127 against a row of equal values (16-bit code 32767,
    # bytes 255/255): the largest sums its int32 lanes can be asked for.
    for k in (fixed_point, 128 * 3 + 78):  # even; 78 past the 128s
        weight = torch.full((3, k), 127, dtype=torch.int8)
        weight[1] = -127
        weight[2, ::2] = -127  # cancels to 0 (k even)...
        weight[2, -1] = 5  # ...but for the last weight's tail
        rows = torch.full((1, k), 2.0).bfloat16()
        got = cpu_gemv.gemv(rows, weight).float()[0].tolist()
        want = [254.0 * k, -254.0 * k, 2.0 * 127 * (k // 2 - 1) -
                2.0 * 127 * (k // 2) + 2.0 * 5]
        assert got == [torch.tensor(v).bfloat16().item() for v in want]
    assert cpu_gemv.applies(torch.randn(1, fixed_point).bfloat16(),
                            torch.zeros(2, fixed_point, dtype=torch.int8))
    assert not cpu_gemv.applies(torch.randn(1, fixed_point + 64).bfloat16(),
                                torch.zeros(2, fixed_point + 64,
                                            dtype=torch.int8))


def test_int8_fixed_point_rounds_the_row_within_bf16s_error(fixed_point):
    torch.manual_seed(0)
    k = 8192 + 13
    weight = torch.randint(-127, 128, (64, k), dtype=torch.int8)
    # Large and tiny values in one row: 16-bit steps of the largest.
    rows = (torch.randn(1, k) * torch.logspace(-3, 1, k)).bfloat16()
    want = rows.double() @ weight.double().t()
    got = cpu_gemv.gemv(rows, weight).double()
    # Each x within half a step (max|x| / 32767 / 2) of its 16-bit code,
    # then one bf16 rounding of the sum.
    half_step = rows.float().abs().max().item() / 32767 / 2
    bound = half_step * weight.double().abs().sum(dim=1)
    assert ((got - want).abs() <= want.abs() * 2 ** -8 + bound).all()
    # NaN and inf in a row reach the sums, as in the float loop.
    for bad in (float('nan'), float('inf')):
        poisoned = rows.clone()
        poisoned[0, 5] = bad
        out = cpu_gemv.gemv(poisoned, weight)
        assert not torch.isfinite(out).any()
    zero = cpu_gemv.gemv(torch.zeros(1, k).bfloat16(), weight)
    assert torch.equal(zero, torch.zeros(1, 64).bfloat16())


def test_dequantize_into_makes_the_bf16_weights_aten_would(ready):
    torch.manual_seed(0)
    weight = torch.randint(-127, 128, (19, 203), dtype=torch.int8)
    scales = torch.rand(19).bfloat16()
    out = torch.full((19, 203), float('nan'), dtype=torch.bfloat16)
    assert cpu_gemv.dequantize_into(weight, scales, out)
    assert torch.equal(out, weight.bfloat16() * scales[:, None])
    # Anything else it does not touch: the caller takes ATen's way.
    for bad in (torch.empty(19, 202, dtype=torch.bfloat16),
                torch.empty(19, 203), torch.empty(203, 19).bfloat16().t()):
        assert not cpu_gemv.dequantize_into(weight, scales, bad)
    assert not cpu_gemv.dequantize_into(weight, scales.float(), out)


def test_gemv_takes_one_cpu_row_with_matching_dtypes_only(ready):
    weight = torch.randn(8, 16)
    one = torch.randn(1, 16)
    assert cpu_gemv.applies(one, weight)
    assert not cpu_gemv.applies(torch.randn(2, 16), weight), 'a GEMM'
    long_row = cpu_gemv.INT8_MAX_ROW + 64  # ATen's int8 kernel is faster
    assert not cpu_gemv.applies(torch.randn(1, long_row),
                                torch.zeros(4, long_row, dtype=torch.int8)), \
        'fp32 x int8 takes the float loop, which has a shorter bound'
    assert cpu_gemv.applies(torch.randn(1, long_row), torch.zeros(4, long_row))
    assert not cpu_gemv.applies(one.half(), weight.half()), 'fp16'
    assert not cpu_gemv.applies(one, weight.t().contiguous().t())
    assert not cpu_gemv.applies(one, weight, bias=torch.zeros(8).bfloat16())
    assert not cpu_gemv.applies(one, weight, scales=torch.ones(16)[::2])
    # Shapes the C code would read past: refused, not trusted.
    assert not cpu_gemv.applies(torch.randn(1, 15), weight)
    assert not cpu_gemv.applies(one, weight, bias=torch.zeros(7))
    assert not cpu_gemv.applies(one, weight[None])
    assert not cpu_gemv.applies(one, weight.requires_grad_()), 'autograd'
    with torch.no_grad():
        assert cpu_gemv.applies(one, weight)


def test_a_linear_compiles_into_one_graph_with_the_kernel(ready):
    torch.manual_seed(0)
    linear = cpu_gemv.GemvLinear(torch.nn.Linear(48, 24).bfloat16())
    hidden = torch.randn(1, 1, 48, dtype=torch.bfloat16)
    with torch.no_grad():  # as the engine decodes
        eager = linear(hidden)
        torch._dynamo.reset()
        # fullgraph: a ctypes call traced by dynamo would break the graph.
        compiled = torch.compile(linear, fullgraph=True)(hidden)
    assert torch.equal(compiled, eager)
    direct = cpu_gemv.gemv(hidden[0], linear.weight, bias=linear.bias)
    assert torch.equal(eager, direct[None])


# -- through the engine ----------------------------------------------------
def greedy(engine, frames):
    """One stream at a time (batch 1), as a lone camera decodes."""
    from kosmos_ros.model.decoding import greedy_generate
    return [greedy_generate(engine.model, engine.encode([frame]),
                            [engine.prompt(BOX_PROMPT)], 12, -1,
                            engine.pad_id)[0] for frame in frames]


def test_decoding_with_gemv_matches_atens_kernels(ready, tiny_model_dir,
                                                  monkeypatch):
    frames = [make_frame(240, 320, seed) for seed in range(3)]
    options = ModelOptions(model=str(tiny_model_dir), device='cpu',
                           dtype='fp32', attn_implementation='eager')
    with_gemv = KosmosEngine.load(options)
    assert any(type(m) is cpu_gemv.GemvLinear
               for m in with_gemv.model.modules())
    monkeypatch.setattr(cpu_gemv, '_state', {'why': 'off for the test'})
    with_aten = KosmosEngine.load(options)
    assert not any(type(m) is cpu_gemv.GemvLinear
                   for m in with_aten.model.modules())
    for a, b in zip(greedy(with_gemv, frames), greedy(with_aten, frames)):
        assert a.token_ids == b.token_ids
        assert a.probs == pytest.approx(b.probs, rel=1e-4)


# -- how it is built ---------------------------------------------------------
def test_the_kernel_is_built_once_per_machine_and_reused(fresh):
    real = os.environ.get('CC') or 'cc'
    cc = compiler_script(fresh, 'exec %s "$@"' % real)
    os.environ['CC'] = str(cc)
    try:
        ok, why = cpu_gemv.status()
        if not ok:
            pytest.skip('no working C compiler here: %s' % why)
        built = list((fresh / 'cache' / 'kernels').iterdir())
        assert [p.suffix for p in built] == ['.so'], 'one library, no parts'
        assert str(built[0]) in why
        assert oct(built[0].parent.stat().st_mode & 0o777) == '0o700'
        cpu_gemv._state.clear()  # the next process
        assert cpu_gemv.status() == (True, why)
    finally:
        del os.environ['CC']
    calls = (fresh / 'cc.log').read_text().splitlines()
    builds = [c for c in calls if 'gemv.c' in c]
    assert len(builds) == 1 and '-march=native' in builds[0]
    assert '-ffast-math' not in builds[0], 'it would set flush-to-zero'


def test_a_machine_without_a_compiler_decodes_with_aten(
        fresh, tiny_model_dir, monkeypatch):
    monkeypatch.setenv('CC', str(fresh / 'no-such-cc'))
    lines = []
    engine = KosmosEngine.load(ModelOptions(
        model=str(tiny_model_dir), device='cpu', quantization='int8wo'),
        log=lines.append)
    assert cpu_gemv.status()[0] is False
    assert any(line.startswith("decode kernel: ATen's (gemv.c unavailable: "
                               'no C compiler') for line in lines), lines
    caption = greedy(engine, [make_frame(240, 320, 0)])[0]
    assert caption.token_ids and all(0 < p <= 1 for p in caption.probs)


def test_a_failing_build_is_reported_and_leaves_nothing(fresh, monkeypatch):
    cc = compiler_script(fresh, 'echo "gemv.c:1: error: broken" >&2; exit 1')
    monkeypatch.setenv('CC', str(cc))
    ok, why = cpu_gemv.status()
    assert not ok and 'could not build gemv.c' in why and 'broken' in why
    assert list(Path(fresh / 'cache' / 'kernels').iterdir()) == []


def test_the_kernel_can_be_turned_off(fresh, monkeypatch):
    monkeypatch.setenv('KOSMOS_ROS_CPU_KERNEL', '0')
    assert cpu_gemv.status() == (False, 'off (KOSMOS_ROS_CPU_KERNEL=0)')
    assert not cpu_gemv.applies(torch.randn(1, 4), torch.randn(2, 4))


def test_the_package_installs_the_kernels_source(tmp_path):
    # colcon (ament_python) and pip both copy packages with build_py: an
    # installed kosmos_ros without gemv.c would decode with ATen's kernels.
    import subprocess
    import sys
    root = Path(cpu_gemv.__file__).parents[2]
    subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info',
                    '--egg-base', str(tmp_path), 'build_py', '--build-lib',
                    str(tmp_path)], cwd=root, check=True, capture_output=True)
    copied = tmp_path / 'kosmos_ros' / 'model' / 'gemv.c'
    assert copied.read_bytes() == cpu_gemv.SOURCE.read_bytes()
