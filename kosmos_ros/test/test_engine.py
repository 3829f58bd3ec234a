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
"""The core pipeline on the tiny random checkpoint, through the real loading code."""

import math

from conftest import BOX_PROMPT, make_frame
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='torch is not installed')

from kosmos_ros.model.decoding import greedy_generate  # noqa: E402, I100
from kosmos_ros.model.engine import KosmosEngine  # noqa: E402
from kosmos_ros.model.loading import ModelLoadError, ModelOptions  # noqa: E402
from kosmos_ros.model.preprocess import ImageError  # noqa: E402
from kosmos_ros.model.questions import RequestError  # noqa: E402


def test_loads_through_from_pretrained(engine, tiny_model_dir):
    from transformers import Kosmos2ForConditionalGeneration
    assert isinstance(engine.model, Kosmos2ForConditionalGeneration)
    assert engine.device == 'cpu' and engine.dtype == torch.float32
    assert (tiny_model_dir / 'model.safetensors').exists()


def test_caption_one_frame(engine):
    (result,) = engine.caption([make_frame()], max_new_tokens=16)
    assert result.text.startswith('An image of')
    assert '<' not in result.text
    assert (result.width, result.height) == (320, 240)
    assert 1 <= result.num_tokens <= 16


def test_boxes_are_source_pixels_inside_the_image_with_model_scores(engine):
    frames = [make_frame(480, 640, 1), make_frame(100, 900, 2)]
    results = engine.caption(frames, prompt=BOX_PROMPT, max_new_tokens=12)
    boxes = [b for r in results for b in r.boxes()]
    assert boxes, 'the open-object prompt must yield location tokens'
    for result, frame in zip(results, frames):
        h, w = frame.shape[:2]
        for box in result.boxes():
            assert box.phrase == 'a red cup'
            assert 0 <= box.x1 < box.x2 <= w and 0 <= box.y1 < box.y2 <= h
            # Pixel units: a grid cell is w/32 wide, so edges sit on it.
            for value, size in ((box.x1, w), (box.x2, w)):
                assert math.isclose(value * 64 / size,
                                    round(value * 64 / size), abs_tol=1e-6)
            assert 0.0 < box.score <= 1.0
    # Scores come from the model's probabilities: not all the same constant.
    assert len({round(b.score, 9) for b in boxes}) > 1


def test_score_is_geometric_mean_of_corner_token_probabilities(engine):
    frame = make_frame(seed=5)
    embeds = engine.encode([frame])
    prompt = engine.prompt(BOX_PROMPT)
    (out,) = greedy_generate(engine.model, embeds, [prompt], 4,
                             engine.eos_id, engine.pad_id)
    (result,) = engine.generate(embeds, [prompt], [(320, 240)], 4)
    box = result.boxes()[0]
    patch = [p for i, p in zip(out.token_ids, out.probs)
             if i in engine._patch_ids]
    assert box.score == pytest.approx(math.sqrt(patch[0] * patch[1]))


def test_several_frames_batched_equal_one_at_a_time(engine):
    frames = [make_frame(seed=s) for s in range(3)]
    prompts = ['<grounding>An image of', BOX_PROMPT,
               '<grounding>Describe this image in detail:']
    embeds = engine.encode(frames)
    tokenised = [engine.prompt(p) for p in prompts]
    assert len({len(p.input_ids) for p in tokenised}) == 3  # real padding
    batched = greedy_generate(engine.model, embeds, tokenised, 20,
                              engine.eos_id, engine.pad_id)
    for i in range(3):
        (alone,) = greedy_generate(engine.model, embeds[i:i + 1],
                                   [tokenised[i]], 20, engine.eos_id,
                                   engine.pad_id)
        assert batched[i].token_ids == alone.token_ids
        assert batched[i].probs == pytest.approx(alone.probs, abs=1e-5)


def test_matches_transformers_generate_token_for_token(engine):
    from PIL import Image
    frame = make_frame(seed=7)
    inputs = engine.processor(text=BOX_PROMPT, images=Image.fromarray(frame),
                              return_tensors='pt')
    reference = engine.model.generate(
        pixel_values=inputs['pixel_values'], input_ids=inputs['input_ids'],
        attention_mask=inputs['attention_mask'],
        image_embeds_position_mask=inputs['image_embeds_position_mask'],
        max_new_tokens=24, do_sample=False)
    new = reference[0, inputs['input_ids'].shape[1]:].tolist()
    pixel = inputs['pixel_values'].to(engine.dtype)
    from kosmos_ros.model.decoding import encode_images
    (ours,) = greedy_generate(engine.model, encode_images(engine.model, pixel),
                              [engine.prompt(BOX_PROMPT)], 24, engine.eos_id,
                              engine.pad_id)
    assert ours.token_ids == new[:len(ours.token_ids)]
    assert all(t == engine.pad_id for t in new[len(ours.token_ids):])


def test_prompt_tokens_match_the_processor(engine):
    from PIL import Image
    frame = make_frame()
    text = '<grounding> Question: What is<phrase> this</phrase>? Answer:'
    bboxes = [(0.1, 0.2, 0.5, 0.6)]
    reference = engine.processor(text=text, images=Image.fromarray(frame),
                                 bboxes=bboxes)
    prompt = engine.prompt(text, bboxes)
    assert prompt.input_ids == reference['input_ids']
    assert prompt.image_mask == reference['image_embeds_position_mask']


def test_should_stop_ends_generation_early(engine):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= 2
    (result,) = engine.caption([make_frame()], max_new_tokens=50,
                               should_stop=stop)
    assert result.num_tokens <= 2


def test_ask_and_locate_stream_their_text_and_stop_when_asked(engine):
    # The actions' feedback and cancel: on_step hears every token with the
    # answer so far; should_stop ends the generation at the next token.
    frame = make_frame(seed=5)
    heard = []
    whole = engine.ask(frame, 'What is this?', max_new_tokens=12,
                       on_step=lambda n, text: heard.append((n, text())))
    assert [n for n, _ in heard] == list(range(1, whole.num_tokens + 1))
    assert heard[-1][1] == whole.text
    assert all(whole.text.startswith(text.rstrip()) for _, text in heard
               if text), heard
    steps = []
    cut = engine.ask(frame, 'What is this?', max_new_tokens=12,
                     should_stop=lambda: len(steps) >= 3,
                     on_step=lambda n, text: steps.append(n))
    assert cut.num_tokens == 3 == len(steps) < whole.num_tokens
    located = []
    engine.locate(frame, 'a red cup', should_stop=lambda: len(located) >= 2,
                  on_step=lambda n, text: located.append(text()))
    assert len(located) == 2


@pytest.mark.parametrize('frame, message', [
    (np.zeros((0, 10, 3), np.uint8), 'empty'),
    (np.zeros((10, 10), np.uint8), 'HxWx3'),
    (np.zeros((10, 10, 3), np.float32), 'uint8'),
    ('not an image', 'numpy'),
])
def test_bad_frames_are_refused_clearly(engine, frame, message):
    with pytest.raises(ImageError, match=message):
        engine.caption([frame])


def test_oversized_frame_is_refused(tiny_model_dir):
    small = KosmosEngine.load(ModelOptions(model=str(tiny_model_dir)),
                              max_pixels=1000)
    with pytest.raises(ImageError, match='limit'):
        small.caption([make_frame(100, 100)])


@pytest.mark.parametrize('tokens', [0, -1, 10_000])
def test_max_new_tokens_is_bounded(engine, tokens):
    with pytest.raises(ValueError, match='max_new_tokens'):
        engine.caption([make_frame()], max_new_tokens=tokens)


def test_missing_local_model_says_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match='make-tiny-model'):
        KosmosEngine.load(ModelOptions(model=str(tmp_path / 'nope')))


def test_unreachable_hub_model_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', '/nonexistent-cache')
    with pytest.raises(ModelLoadError) as error:
        KosmosEngine.load(ModelOptions(model='microsoft/kosmos-2-patch14-224',
                                       local_files_only=True))
    message = str(error.value)
    assert 'microsoft/kosmos-2-patch14-224' in message
    assert 'HF_HUB_OFFLINE' in message and 'hf download' in message


@pytest.mark.parametrize('field, value', [
    ('device', 'tpu'), ('dtype', 'int3'), ('quantization', '2bit'),
    ('attn_implementation', 'magic'), ('model', '')])
def test_invalid_options_are_refused(field, value):
    options = ModelOptions(**{field: value})
    with pytest.raises(ValueError, match=field if field != 'model' else
                       'model'):
        options.validate()


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a CPU-only box')
def test_quantization_without_bitsandbytes_explains_itself(
        tiny_model_dir, monkeypatch):
    # Quantization runs on the CPU too (test_precision); without the
    # package it says what to install.
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None
                        if name == 'bitsandbytes' else find_spec(name, *a))
    with pytest.raises(ModelLoadError, match='pip install bitsandbytes'):
        KosmosEngine.load(ModelOptions(model=str(tiny_model_dir),
                                       device='cpu', quantization='4bit'))


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a CPU-only box')
def test_cuda_device_without_gpu_explains_itself(tiny_model_dir):
    with pytest.raises(ModelLoadError, match='no CUDA GPU'):
        KosmosEngine.load(ModelOptions(model=str(tiny_model_dir),
                                       device='cuda'))


@pytest.mark.parametrize('device', ['cuda', 'auto'])
def test_w8a8_on_a_gpu_is_refused_before_loading(tiny_model_dir, monkeypatch,
                                                 device):
    # w8a8's int8 GEMMs are the CPU's (oneDNN): a GPU user is pointed to
    # int8wo or 8bit before a weight is read.
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    with pytest.raises(ModelLoadError, match='w8a8 is a CPU format.*int8wo'):
        KosmosEngine.load(ModelOptions(model=str(tiny_model_dir),
                                       device=device, quantization='w8a8'))


def test_auto_dtype_is_fp32_on_cpu_and_bf16_loads(tiny_model_dir):
    bf16 = KosmosEngine.load(ModelOptions(model=str(tiny_model_dir),
                                          device='cpu', dtype='bf16'))
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    (result,) = bf16.caption([make_frame()], max_new_tokens=4)
    assert result.text.startswith('An image of')


@pytest.mark.parametrize('frame', [None, [[1, 2, 3]], 'image'])
def test_ask_and_locate_refuse_what_is_not_a_frame(engine, frame):
    with pytest.raises(ImageError):
        engine.ask(frame, 'What is this?')
    with pytest.raises(ImageError):
        engine.locate(frame, 'a cup')


def test_several_phrases_in_one_batch_equal_one_at_a_time(engine):
    frame = make_frame(120, 160, seed=4)
    phrases = ['a red cup', 'the door handle', 'a dog on the left']
    batched = engine.locate_many(frame, phrases)
    alone = [engine.locate(frame, p) for p in phrases]
    assert [r.raw for r in batched] == [r.raw for r in alone]
    for a, b in zip(batched, alone):
        assert [(x.phrase, x.xyxy(), round(x.score, 5)) for x in a.boxes()] \
            == [(x.phrase, x.xyxy(), round(x.score, 5)) for x in b.boxes()]


def test_a_phrase_list_is_bounded_and_checked(engine):
    frame = make_frame(60, 80)
    with pytest.raises(RequestError, match='1 to 16 phrases'):
        engine.locate_many(frame, ['a cup'] * 17)
    with pytest.raises(RequestError, match='1 to 16 phrases'):
        engine.locate_many(frame, [])
    with pytest.raises(RequestError, match='plain text'):
        engine.locate_many(frame, ['a cup', '<phrase>x'])


def test_all_phrases_of_all_frames_in_one_batch_equal_one_at_a_time(engine):
    frames = [make_frame(120, 160, seed=5), make_frame(90, 200, seed=6)]
    phrases = ['a red cup', 'the door handle', 'a dog']
    embeds = engine.encode(frames)
    found = engine.ground(embeds, [(f.shape[1], f.shape[0]) for f in frames],
                          phrases)
    assert len(found) == 2 and all(len(row) == 3 for row in found)
    for frame, row in zip(frames, found):
        alone = [engine.locate(frame, p) for p in phrases]
        assert [r.raw for r in row] == [r.raw for r in alone]
        assert [[(b.xyxy(), round(b.score, 5)) for b in r.boxes()]
                for r in row] == \
            [[(b.xyxy(), round(b.score, 5)) for b in r.boxes()]
             for r in alone]
        # Boxes are in each frame's own pixels.
        assert all(b.x2 <= frame.shape[1] and b.y2 <= frame.shape[0]
                   for r in row for b in r.boxes())


def test_a_phrase_row_keeps_the_boxes_of_a_full_length_decode(engine):
    # A row is cut at </object> to save tokens; the phrase's boxes must be
    # those of the same prompt decoded to the full budget.
    from kosmos_ros.model.questions import locate_prompt
    frame = make_frame(120, 160, seed=7)
    phrases = ['a red cup', 'a dog', 'the door', 'a window', 'a chair']
    embeds = engine.encode([frame])
    (cut,) = engine.ground(embeds, [(160, 120)], phrases, max_new_tokens=24)
    full = engine.generate(
        embeds.expand(len(phrases), -1, -1).contiguous(),
        [engine.prompt(locate_prompt(p)) for p in phrases],
        [(160, 120)] * len(phrases), 24)
    for short, long in zip(cut, full):
        first = long.entities[:1] if long.entities and \
            long.entities[0].span[0] == 0 else []
        assert [b.xyxy() for e in first for b in e.boxes] == \
            [b.xyxy() for b in short.boxes()]


def test_a_row_ends_at_a_stop_token_and_the_other_rows_are_untouched(engine):
    from kosmos_ros.model.decoding import greedy_generate
    from kosmos_ros.model.questions import locate_prompt
    prompts = [engine.prompt(locate_prompt(p))
               for p in ('a red cup', 'a dog', 'the door')]
    embeds = engine.encode([make_frame(seed=8)]).repeat(3, 1, 1)

    def run(stop_ids=()):
        return greedy_generate(engine.model, embeds, prompts, 12,
                               engine.eos_id, engine.pad_id,
                               stop_ids=stop_ids)
    full = run()
    stop = full[1].token_ids[5]  # a token row 1 chooses at its 6th step
    cut = run(stop_ids=(stop,))
    assert len(cut[1].token_ids) <= 6
    for whole, short in zip(full, cut):
        ids = whole.token_ids
        end = ids.index(stop) + 1 if stop in ids else len(ids)
        assert short.token_ids == ids[:end]
        assert short.probs == pytest.approx(whole.probs[:end])


def test_the_static_cache_decoder_serves_the_engine_with_the_same_results(
        engine):
    # compile=True is the same code compiled (test_static_decode); here the
    # engine's wiring: captions and batched phrases through the decoder.
    from kosmos_ros.model.static_decode import StaticDecoder
    frames = [make_frame(seed=21), make_frame(90, 120, seed=22)]
    phrases = ['a red cup', 'a dog', 'the door']

    def run():
        return (engine.caption(frames, prompt=BOX_PROMPT, max_new_tokens=8),
                engine.locate_many(frames[1], phrases))

    def boxes(results):
        return [[(b.xyxy(), round(b.score, 5)) for b in r.boxes()]
                for r in results]
    eager = run()
    engine.decoder = StaticDecoder(engine.model, compile=False)
    try:
        static = run()
    finally:
        engine.decoder = None
    for a, b in zip(eager, static):
        assert [r.raw for r in a] == [r.raw for r in b]
        assert boxes(a) == boxes(b)


def test_the_cache_goes_by_the_name_the_installed_transformers_takes():
    # 5.24 renamed past_key_values to cache (the old name warns, which the
    # suite's filterwarnings makes an error); 5.20.2, the newest release for
    # Python 3.10, has only the old name. Both are run by tools/matrix.sh.
    from kosmos_ros.model.decoding import cache_keyword
    from packaging.version import Version
    import transformers
    from transformers.models.kosmos2 import modeling_kosmos2
    name = cache_keyword(modeling_kosmos2.Kosmos2TextForCausalLM)
    version = Version(transformers.__version__)
    if version >= Version('5.24'):
        assert name == 'cache'
    if version <= Version('5.20.2'):
        assert name == 'past_key_values'

    class Renamed:  # a release that renamed it once more

        def forward(self, input_ids, kv_store=None):
            return input_ids

    with pytest.raises(TypeError, match='neither `cache` nor'):
        cache_keyword(Renamed)


def test_a_freed_engine_leaves_no_parameter_reachable(tiny_model_dir,
                                                      engine):
    import weakref
    from kosmos_ros.model.slot import EngineSlot
    from kosmos_ros.model.static_decode import StaticDecoder
    slot = EngineSlot()
    loaded = slot.load(ModelOptions(model=str(tiny_model_dir), device='cpu'),
                       0)
    assert slot.load(None, 0) is loaded, 'loaded once'
    # What serving leaves behind: eager and compiled generations (dynamo's
    # caches sit on the step's code object, shared by every decoder).
    loaded.caption([make_frame()], max_new_tokens=4)
    loaded.decoder = StaticDecoder(loaded.model, compile=True)
    loaded.decoder.warmup(batch_sizes=(1,))
    loaded.caption([make_frame()], max_new_tokens=4)
    refs = [weakref.ref(p) for p in loaded.model.parameters()]
    del loaded
    assert slot.free() is True
    assert slot.engine is None
    assert [r for r in refs if r() is not None] == []
    assert slot.free() is False, 'nothing left to free'
    given = EngineSlot(engine)
    assert given.load(None, 0) is engine and given.free() is False
    assert given.engine is engine, "a caller's engine is never freed"
