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
fp32, fp16 and bf16 on the CPU through the real loading code.

torch runs all three there, so what a GPU would run in half precision is
checked here: finite probabilities, scores in [0, 1], boxes inside the
image, and tokens that agree with fp32's (AGREEMENT). The fp16 padding case
is built to overflow: without the mask guard it makes NaN.
"""

from conftest import BOX_PROMPT, make_frame
import pytest

torch = pytest.importorskip('torch', reason='torch is not installed')

from kosmos_ros.model import cpu_gemv  # noqa: E402, I100
from kosmos_ros.model.decoding import _collate, position_ids  # noqa: E402
from kosmos_ros.model.engine import KosmosEngine  # noqa: E402
from kosmos_ros.model.loading import ModelOptions  # noqa: E402
from kosmos_ros.model.questions import locate_prompt  # noqa: E402

DTYPES = ('fp32', 'fp16', 'bf16')
# Least share of fp32's tokens a half-precision run repeats on the random
# test checkpoint, whose near-ties bf16's 8-bit mantissa flips: measured fp16
# 1.00 everywhere, bf16 1.00 on Python 3.11 (transformers 5.24) and 0.72 on
# Python 3.10 (transformers 5.20.2).
AGREEMENT = {'fp16': 0.9, 'bf16': 0.5}
PHRASES = ['a', 'the big red cup on the left side of the table']  # padded
FRAMES = [make_frame(240, 320, seed) for seed in range(4)]


def load(tiny_model_dir, dtype, attention='eager'):
    return KosmosEngine.load(ModelOptions(
        model=str(tiny_model_dir), device='cpu', dtype=dtype,
        attn_implementation=attention))


@pytest.fixture(scope='module')
def engines(tiny_model_dir):
    """One engine per dtype over the same checkpoint, eager attention."""
    return {dtype: load(tiny_model_dir, dtype) for dtype in DTYPES}


def outputs(engine):
    """Captions with boxes, and two phrases of different lengths grounded."""
    captions = engine.caption(FRAMES, prompt=BOX_PROMPT, max_new_tokens=24)
    found = engine.ground(engine.encode(FRAMES), [(320, 240)] * len(FRAMES),
                          PHRASES)
    return captions + [g for row in found for g in row]


@pytest.mark.parametrize('dtype', DTYPES)
def test_every_dtype_gives_sane_results(engines, dtype):
    engine = engines[dtype]
    assert engine.dtype == {'fp32': torch.float32, 'fp16': torch.float16,
                            'bf16': torch.bfloat16}[dtype]
    results = outputs(engine)
    boxes = [box for result in results for box in result.boxes()]
    assert boxes
    for result in results:
        for box in result.boxes():
            assert 0 <= box.x1 < box.x2 <= 320 and 0 <= box.y1 < box.y2 <= 240
            assert 0.0 <= box.score <= 1.0


@pytest.mark.parametrize('dtype', ['fp16', 'bf16'])
def test_half_precision_tokens_agree_with_fp32(engines, dtype):
    want = [r.raw.split('>') for r in outputs(engines['fp32'])]
    got = [r.raw.split('>') for r in outputs(engines[dtype])]
    same = total = 0
    for a, b in zip(want, got):
        for x, y in zip(a, b):  # tokens up to the first difference
            if x != y:
                break
            same += 1
        total += max(len(a), len(b))
    print('\n%s repeats %.1f%% of fp32 tokens' % (dtype, 100 * same / total))
    assert same / total >= AGREEMENT[dtype]


def make_scores_overflow(model):
    """
    Make every attention score about -200: fp16 overflows on a masked key.

    Queries are minus the keys (q = -x, k = x) and the layer norm before
    attention adds 5 to every feature, so q.k ~ -|5|^2 x 32 / 4 = -200 at
    any position, padding included (whose hidden state is all zeros).
    """
    with torch.no_grad():
        for layer in model.text_model.model.layers:
            attn = layer.self_attn
            eye = torch.eye(attn.k_proj.weight.shape[0],
                            dtype=attn.k_proj.weight.dtype)
            attn.k_proj.weight.copy_(eye)
            attn.q_proj.weight.copy_(-eye)
            attn.k_proj.bias.zero_()
            attn.q_proj.bias.zero_()
            layer.self_attn_layer_norm.bias.fill_(5.0)


def padded_logits(engine):
    """Logits of two left-padded locate prompts (the prefill's call)."""
    prompts = [engine.prompt(locate_prompt(p)) for p in PHRASES]
    ids, attn, img_mask = _collate(prompts, engine.pad_id, 'cpu')
    assert (attn == 0).any(), 'the short phrase must be left padded'
    model = engine.model
    with torch.no_grad():
        return model.text_model(
            input_ids=ids, attention_mask=attn, image_embeds=engine.encode(
                FRAMES[:2]), image_embeds_position_mask=img_mask,
            position_ids=position_ids(
                attn, model.text_model.model.embed_positions.padding_idx),
            use_cache=False).logits


@pytest.mark.parametrize('attention', ['eager', 'sdpa'])
def test_fp16_left_padding_cannot_overflow_to_nan(tiny_model_dir, attention):
    engine = load(tiny_model_dir, 'fp16', attention)
    make_scores_overflow(engine.model)
    decoder = engine.model.text_model.model
    guarded = decoder._prepare_decoder_attention_mask
    assert guarded.kosmos_guarded
    if attention == 'eager':
        # The case is real: transformers' own mask gives NaN here.
        decoder._prepare_decoder_attention_mask = guarded.__wrapped__
        try:
            assert torch.isnan(padded_logits(engine)).any()
        finally:
            decoder._prepare_decoder_attention_mask = guarded
    logits = padded_logits(engine)
    assert torch.isfinite(logits).all()
    for row in engine.ground(engine.encode(FRAMES[:1]), [(320, 240)],
                             PHRASES)[0]:
        for box in row.boxes():
            assert 0.0 <= box.score <= 1.0


# -- dtype x quantization x compile -------------------------------------------
# Every working combination; 8bit with fp32 or bf16, 8bit compiled and
# int8wo or w8a8 with fp32 or fp16 are refused (test_config, and
# test_8bit_compiled_is_refused_before_loading).
COMBINATIONS = [(d, 'none', c) for d in DTYPES for c in (False, True)] + \
    [('bf16', q, c) for q in ('int8wo', 'w8a8') for c in (False, True)] + \
    [('fp16', '8bit', False)] + \
    [(d, '4bit', c) for d in DTYPES for c in (False, True)]


@pytest.fixture(scope='module')
def tiny64_model_dir(tmp_path_factory):
    """Write a width-64 checkpoint: CPU 4-bit needs rows of >= 64."""
    from kosmos_ros.model.tiny import make_tiny_model
    return make_tiny_model(tmp_path_factory.mktemp('tiny64') / 'kosmos2',
                           hidden=64)


@pytest.mark.parametrize('dtype, quantization, compiled', COMBINATIONS)
def test_each_combination_runs_on_the_cpu(tiny_model_dir, tiny64_model_dir,
                                          one_thread, dtype, quantization,
                                          compiled):
    if quantization not in ('none', 'int8wo', 'w8a8'):
        pytest.importorskip('bitsandbytes', reason='bitsandbytes (the test '
                            'extra) is not installed')
    from kosmos_ros.model.decoding import greedy_generate
    from kosmos_ros.model.static_decode import StaticDecoder
    folder = tiny64_model_dir if quantization == '4bit' else tiny_model_dir
    engine = KosmosEngine.load(ModelOptions(
        model=str(folder), device='cpu', dtype=dtype,
        quantization=quantization))
    linears = {type(m).__name__ for n, m in engine.model.named_modules()
               if n.startswith('text_model.model.layers')}
    # Float weights on the CPU: one stream's step in gemv.c where it built.
    from kosmos_ros.model.cpu_gemv import status
    gemv = status()[0] and engine.dtype in (torch.float32, torch.bfloat16)
    assert {'none': 'GemvLinear' if gemv else 'Linear',
            'int8wo': 'Int8Linear', 'w8a8': 'Int8Linear',
            '8bit': 'Linear8bitLt', '4bit': 'Linear4bit'}[quantization] \
        in linears
    if quantization in ('int8wo', 'w8a8'):
        assert not linears & {'Linear', 'GemvLinear'}, \
            'every decoder linear in int8'
    vision = {n: type(m).__name__ for n, m in engine.model.named_modules()
              if n.startswith(('vision_model', 'image_to_text'))}
    if quantization == 'w8a8':
        # The vision encoder's linears in int8 GEMMs; the rest in dtype.
        encoder = {kind for n, kind in vision.items()
                   if n.startswith('vision_model.model.encoder.layers')}
        assert 'Int8Linear' in encoder and 'Linear' not in encoder
        vision = {n: kind for n, kind in vision.items()
                  if not n.startswith('vision_model.model.encoder.layers')}
    assert not set(vision.values()) & {'Linear8bitLt', 'Linear4bit',
                                       'Int8Linear', 'GemvLinear'}, \
        'vision kept in dtype, in ATen'
    for result in outputs(engine):
        for box in result.boxes():
            assert 0 <= box.x1 < box.x2 <= 320 and 0 <= box.y1 < box.y2 <= 240
            assert 0.0 <= box.score <= 1.0
    prompts = [engine.prompt(locate_prompt(p)) for p in PHRASES]
    embeds = engine.encode(FRAMES[:2])
    want = greedy_generate(engine.model, embeds, prompts, 12, -1,
                           engine.pad_id)
    decoder = StaticDecoder(engine.model, compile=compiled)
    if compiled:
        decoder.warmup(batch_sizes=(2,), lengths=(256,))
    got = decoder.generate(embeds, prompts, 12, -1, engine.pad_id)
    for a, b in zip(want, got):
        if dtype == 'fp32':
            assert b.token_ids == a.token_ids  # the static step: same tokens
        else:
            # Half precision: the compiled kernels round apart from eager
            # (fp32 intermediates), which flips near-ties of a random model
            # (bf16 on Python 3.10 / transformers 5.20.2: token 5 of 12).
            # The prefill is shared: the first token is the same.
            assert b.token_ids[0] == a.token_ids[0]
            assert len(b.token_ids) == len(a.token_ids)
        assert all(0.0 < p <= 1.0 for p in b.probs)


@pytest.mark.parametrize('dtype', ['auto', 'fp16'])
def test_8bit_compiled_is_refused_before_loading(dtype):
    with pytest.raises(ValueError, match='set compile off'):
        KosmosEngine.load(ModelOptions(model='/nonexistent', dtype=dtype,
                                       quantization='8bit'), compile='on')


# -- int8wo: weight-only int8 ----------------------------------------------
@pytest.mark.parametrize('rows', [(1, 1), (3, 5), (2, 40)],
                         ids=['one stream step (gemv.c where built)',
                              'int8 kernel (a batch of steps)',
                              'chunked bf16 GEMM (a prefill)'])
def test_int8_linear_computes_with_the_weights_it_stores(rows, monkeypatch):
    from kosmos_ros.model import int8_weights
    from kosmos_ros.model.int8_weights import GEMM_ROWS, Int8Linear, QMAX
    torch.manual_seed(0)
    chunk = 256
    monkeypatch.setattr(int8_weights, 'CHUNK_BYTES', chunk * 2 * 96)
    out_features = chunk * 2 + 40  # three chunks, the last a short one
    linear = torch.nn.Linear(96, out_features).to(torch.bfloat16)
    quantized = Int8Linear(linear)
    assert quantized.weight.dtype == torch.int8
    weight = linear.weight.float()
    # Symmetric per-row rounding: off by at most half a step of each row,
    # a step being the row's largest weight / QMAX (its bf16 rounding up).
    step = quantized.scales.float()[:, None]
    assert (step >= weight.abs().amax(dim=1, keepdim=True) / QMAX).all()
    assert (step <= weight.abs().amax(dim=1, keepdim=True) / QMAX *
            (1 + 2 ** -7)).all()
    assert ((quantized.dequantized() - weight).abs() <= step / 2).all()
    hidden = torch.randn(*rows, 96, dtype=torch.bfloat16)
    assert (rows[0] * rows[1] >= GEMM_ROWS) == (rows[1] == 40)
    want = torch.nn.functional.linear(hidden.float(), quantized.dequantized(),
                                      linear.bias.float())
    with torch.no_grad():
        got = quantized(hidden)
        # gemv.c's paths (where built) and ATen's give the same products.
        monkeypatch.setattr(cpu_gemv, '_state', {'why': 'off for the test'})
        aten = quantized(hidden)
    assert got.shape == (*rows, out_features) and got.dtype == torch.bfloat16
    # bf16 arithmetic, against fp32 over the same weights.
    assert (got.float() - want).norm() / want.norm() < 0.01
    assert (aten.float() - want).norm() / want.norm() < 0.01
    if rows[1] == 40:  # the same bf16 weights, the same GEMMs: bit-equal
        assert torch.equal(got, aten)


# -- w8a8: int8 GEMMs where many rows share a weight -----------------------
def llm_int8_product(hidden, quantized, threshold):
    """LLM.int8's product in fp32: int8 rows, outlier columns apart."""
    rows = hidden.reshape(-1, hidden.shape[-1]).float()
    outliers = rows.abs().amax(dim=0) >= threshold
    ordinary = rows.masked_fill(outliers, 0.0)
    largest = ordinary.abs().amax(dim=1, keepdim=True)
    steps = torch.where(largest > 0, largest / 127, torch.ones_like(largest))
    rounded = torch.round(ordinary / steps).clamp(-127, 127) * steps
    weight = quantized.dequantized()
    out = rounded @ weight.t() + rows[:, outliers] @ weight[:, outliers].t()
    return out + quantized.bias.float()


@pytest.fixture
def w8a8_linear():
    """Make an int8-compute linear (bias included) and its int8wo twin."""
    from kosmos_ros.model.int8_weights import Int8Linear
    if not cpu_gemv.status()[0]:
        pytest.skip('gemv.c is not built here (%s): w8a8 computes as int8wo'
                    % cpu_gemv.status()[1])
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 200).to(torch.bfloat16)
    return Int8Linear(linear, int8_compute=True), Int8Linear(linear)


def relative_error(got, want):
    return ((got.float() - want).norm() / want.norm()).item()


def test_w8a8_products_are_llm_int8s_with_outliers_apart(w8a8_linear,
                                                         monkeypatch):
    from kosmos_ros.model import int8_weights
    quantized, weight_only = w8a8_linear
    hidden = torch.randn(2, 40, 96).to(torch.bfloat16)
    # Two outlier features, as real transformers have: one column large in
    # every row, one in a single row (a column counts if any row reaches).
    hidden[..., 7] = 30.0
    hidden[1, 3, 50] = -12.0
    exact = torch.nn.functional.linear(
        hidden.float(), quantized.dequantized(), quantized.bias.float())
    with torch.no_grad():
        got = quantized(hidden)
        apart = relative_error(got, exact)
        assert got.shape == (2, 40, 200) and got.dtype == torch.bfloat16
        # What gemv.c and _int_mm compute is LLM.int8's product (bf16 out).
        want = llm_int8_product(hidden, quantized,
                                int8_weights.OUTLIER_THRESHOLD)
        assert relative_error(got, want.reshape(got.shape)) < 0.004
        # Without the outlier columns apart, their size sets every row's
        # int8 step and the ordinary columns lose their precision.
        monkeypatch.setattr(int8_weights, 'OUTLIER_THRESHOLD', float('inf'))
        together = relative_error(quantized(hidden), exact)
        weight_only_error = relative_error(weight_only(hidden), exact)
    print('\nw8a8 error vs the int8 weights in fp32: %.4f (outliers in '
          'int8: %.4f; int8wo %.4f)' % (apart, together, weight_only_error))
    assert apart < 0.01 and together > 3 * apart


def test_w8a8_keeps_weight_only_where_int8_rows_cannot_serve(w8a8_linear,
                                                             monkeypatch):
    quantized, weight_only = w8a8_linear
    with torch.no_grad():
        # A decode step (rows below GEMM_ROWS): int8wo's kernels exactly.
        step = torch.randn(3, 96).to(torch.bfloat16)
        assert torch.equal(quantized(step), weight_only(step))
        # A prefill with NaN in a row: floating point, which carries it.
        hidden = torch.randn(40, 96).to(torch.bfloat16)
        hidden[5, 9] = float('nan')
        got = quantized(hidden)
        assert torch.isnan(got[5]).all() and torch.isfinite(got[:5]).all()
        torch.testing.assert_close(got, weight_only(hidden), rtol=0, atol=0,
                                   equal_nan=True)
        # Without gemv.c (no compiler): int8wo's bf16 GEMM.
        monkeypatch.setattr(cpu_gemv, '_state', {'why': 'off for the test'})
        hidden = torch.randn(40, 96).to(torch.bfloat16)
        assert torch.equal(quantized(hidden), weight_only(hidden))


@pytest.mark.parametrize('quantization', ['int8wo', 'w8a8'])
def test_int8_formats_agree_with_fp32_within_the_doctors_bound(
        engines, tiny_model_dir, quantization):
    from kosmos_ros.cli.doctor import (LOGIT_ERROR_BOUND, logit_agreement,
                                       next_token_logits)
    engine = KosmosEngine.load(ModelOptions(
        model=str(tiny_model_dir), device='cpu', quantization=quantization,
        attn_implementation='eager'))
    assert engine.dtype == torch.bfloat16, 'auto is bf16 with int8 weights'
    error, same = logit_agreement(next_token_logits(engine, FRAMES),
                                  next_token_logits(engines['fp32'], FRAMES))
    print("\n%s: logit error %.4f, first tokens %.0f%% fp32's"
          % (quantization, error, 100 * same))
    assert error <= LOGIT_ERROR_BOUND and same == 1.0
    want = [r.raw for r in outputs(engines['fp32'])]
    got = [r.raw for r in outputs(engine)]
    assert sum(a == b for a, b in zip(want, got)) >= len(want) // 2
