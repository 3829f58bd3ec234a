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
"""Grounded questions and phrase grounding: prompts, validation, answers."""

import math

from conftest import make_frame
from kosmos_ros.model import questions
from kosmos_ros.model.questions import RequestError
import pytest


@pytest.mark.parametrize('question, marked', [
    ('What is this object?', 'What is<phrase> this object</phrase>?'),
    ('Is this door open?', 'Is<phrase> this door</phrase> open?'),
    ('What is this?', 'What is<phrase> this</phrase>?'),
    ('Is that a cat?', 'Is<phrase> that</phrase> a cat?'),
    ('Are those cups clean?', 'Are<phrase> those cups</phrase> clean?'),
    ('What colour is it?', 'What colour is<phrase> it</phrase>?'),
    ('What colour is the car?',
     'About<phrase> this object</phrase>: What colour is the car?'),
    ('What is<phrase> the thing</phrase>?',
     'What is<phrase> the thing</phrase>?'),
])
def test_region_attaches_to_a_phrase_without_caller_markup(question, marked):
    assert questions.mark_region(question) == marked


def test_prompt_follows_the_kosmos2_qa_format():
    assert questions.question_prompt('What is this object?', True) == (
        '<grounding> Question: What is<phrase> this object</phrase>? Answer:')
    assert questions.question_prompt('What is in the image?', False) == (
        '<grounding> Question: What is in the image? Answer:')


def test_history_is_prepended_as_earlier_turns():
    prompt = questions.question_prompt(
        'What colour is it?', False, [('What is this?', 'a cup')])
    assert prompt == ('<grounding> Question: What is this? Answer: a cup. '
                      'Question: What colour is it? Answer:')


@pytest.mark.parametrize('question', [
    'What is<phrase> a</phrase> and<phrase> b</phrase>?',
    'What is</phrase> this?'])
def test_malformed_markup_is_refused(question):
    with pytest.raises(RequestError, match='phrase'):
        questions.mark_region(question)


def test_markup_without_region_is_refused():
    with pytest.raises(RequestError, match='region'):
        questions.question_prompt('What is<phrase> this</phrase>?', False)


@pytest.mark.parametrize('box, message', [
    ((float('nan'), 0, 10, 10), 'NaN'),
    ((0, 0, float('inf'), 10), 'NaN or infinite'),
    ((10, 0, 5, 10), 'positive area'),
    ((0, 10, 10, 10), 'positive area'),
    ((400, 300, 500, 400), 'outside'),
    ((-50, -50, -1, -1), 'outside'),
])
def test_bad_regions_are_refused_with_a_reason(box, message):
    with pytest.raises(RequestError, match=message):
        questions.region_to_normalized(box, 320, 240)


def test_region_is_clipped_to_the_image_and_normalised():
    assert questions.region_to_normalized((-10, 0, 160, 300), 320, 240) == (
        0.0, 0.0, 0.5, 1.0)
    assert questions.region_to_normalized((0, 0, 0, 0), 320, 240) is None


@pytest.mark.parametrize('text, message', [
    ('', 'empty'), ('   ', 'empty'), ('x' * 501, 'more than')])
def test_question_text_is_bounded(text, message):
    with pytest.raises(RequestError, match=message):
        questions.check_text('question', text, 500)


def test_clean_answer_stops_at_a_new_question():
    assert questions.clean_answer(' a red cup. Question: and?') == \
        'a red cup.'


# -- on the tiny model ---------------------------------------------------------

def test_question_prompt_carries_the_region_tokens_of_the_processor(engine):
    from PIL import Image
    frame = make_frame(240, 320)
    region = (32, 24, 160, 120)
    box = questions.region_to_normalized(region, 320, 240)
    text = questions.question_prompt('What is this object?', True)
    ours = engine.prompt(text, [box])
    reference = engine.processor(text=text, images=Image.fromarray(frame),
                                 bboxes=[box])
    assert ours.input_ids == reference['input_ids']
    tokens = engine.tokenizer.convert_ids_to_tokens(ours.input_ids)
    # (0.1, 0.1, 0.5, 0.5) on the 32-grid: cells (3, 3) and (15, 15).
    assert '<patch_index_0099>' in tokens and '<patch_index_0495>' in tokens
    assert tokens.index('<patch_index_0099>') > tokens.index('</phrase>')


def test_answer_is_parsed_from_generated_tokens_only(engine):
    frame = make_frame(240, 320, seed=3)
    result = engine.ask(frame, 'What is this object?', (32, 24, 160, 120),
                        max_new_tokens=8)
    assert 'Question' not in result.text and 'this object' not in result.text
    # The region's own location tokens (in the prompt) never come back.
    for box in result.boxes():
        assert box.phrase != 'this object'
    assert result.num_tokens <= 8


def test_locate_returns_pixel_boxes_for_the_phrase(engine):
    frame = make_frame(480, 640, seed=4)
    result = engine.locate(frame, 'the red cup')
    assert result.boxes(), 'the open object yields location tokens'
    for box in result.boxes():
        assert box.phrase == 'the red cup'
        assert 0 <= box.x1 < box.x2 <= 640 and 0 <= box.y1 < box.y2 <= 480
        assert 0 < box.score <= 1 and not math.isnan(box.score)


def test_ask_refuses_a_bad_region_before_generating(engine):
    with pytest.raises(RequestError, match='outside'):
        engine.ask(make_frame(240, 320), 'What is this?', (500, 500, 600, 600))


def test_reusing_a_frames_encoding_gives_the_same_answer(engine):
    frame = make_frame(240, 320, seed=8)
    embeds = engine.encode([frame])
    fresh = engine.ask(frame, 'What is this?', (0, 0, 100, 100),
                       max_new_tokens=6)
    reused = engine.ask(frame, 'What is this?', (0, 0, 100, 100),
                        max_new_tokens=6, image_embeds=embeds)
    assert reused.raw == fresh.raw
