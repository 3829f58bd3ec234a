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
r"""
Properties of the grounding parser on any string (hypothesis).

CI runs a few thousand examples per property; the long run is

    KOSMOS_FUZZ_EXAMPLES=100000 .venv/bin/python -m pytest \\
        kosmos_ros/test/test_grounding_properties.py -s

which prints how many examples each property saw.
"""

import os

from kosmos_ros.model import grounding
import pytest

hypothesis = pytest.importorskip('hypothesis', reason='hypothesis is not '
                                 'installed (pip install hypothesis)')
from hypothesis import given, HealthCheck, settings  # noqa: E402, I100
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get('KOSMOS_FUZZ_EXAMPLES', '1500'))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
SEEN = {}

# Pieces a model, a cut-off generation or a hostile prompt can produce.
MARKUP = st.sampled_from([
    '<phrase>', '</phrase>', '<object>', '</object>', '<grounding>',
    '</delimiter_of_multi_objects/>', '<image>', '</image>', '<', '>', '<<',
    '>>', '<patch_index_0', '</phr', '<obj', 'ima', 'ge>', '<ima', ' ', '  ',
    'a', ' a cup', ' the red door', '.', '\n'])
PATCH = st.integers(0, 1100).map(lambda i: '<patch_index_%04d>' % i)
ANY_TEXT = st.lists(st.one_of(MARKUP, PATCH, st.text(max_size=4)),
                    max_size=40).map(''.join)


def count(name):
    SEEN[name] = SEEN.get(name, 0) + 1


def teardown_module():
    if SEEN:
        print('\ngrounding properties: %s examples' % ', '.join(
            '%s %d' % item for item in sorted(SEEN.items())))


def check_result(caption, entities, width=640, height=480):
    assert '<' not in caption and '>' not in caption, caption
    for entity in entities:
        start, end = entity.span
        assert 0 <= start <= end <= len(caption), (entity.span, caption)
        assert caption[start:end] == entity.phrase
        assert '<' not in entity.phrase and '>' not in entity.phrase
        assert entity.boxes
        for box in entity.boxes:
            assert 0 <= box.x1 < box.x2 <= 1 and 0 <= box.y1 < box.y2 <= 1
            for w, h in ((width, height), (1, 1), (1, 7000)):
                x1, y1, x2, y2 = grounding.to_pixels(box, w, h)
                assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, (box, w, h)


@SETTINGS
@given(ANY_TEXT)
def test_any_string_parses_to_a_clean_caption_and_valid_boxes(text):
    count('any string')
    check_result(*grounding.parse(text))


@SETTINGS
@given(st.integers(0, 1023), st.integers(0, 1023))
def test_a_reversed_pair_gives_the_box_of_the_ordered_pair(a, b):
    count('corner pairs')
    box = grounding.patch_index_to_box(a, b)
    assert box == grounding.patch_index_to_box(b, a)
    x1, y1, x2, y2 = box
    assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1


def ordered_pair(cells):
    """Two cells as the model writes them: upper-left, then lower-right."""
    (ax, ay), (bx, by) = cells
    x1, x2 = sorted((ax, bx))
    y1, y2 = sorted((ay, by))
    return '<patch_index_%04d><patch_index_%04d>' % (
        y1 * grounding.GRID + x1, y2 * grounding.GRID + x2)


CELL = st.tuples(st.integers(0, 31), st.integers(0, 31))
WORDS = st.text(alphabet='abcdefghij ,.', min_size=1, max_size=12)
OBJECT = st.lists(st.tuples(CELL, CELL).map(ordered_pair), min_size=1,
                  max_size=3).map(
    lambda pairs: '<object>%s</object>' % (
        '</delimiter_of_multi_objects/>'.join(pairs)))
GROUNDED = st.tuples(WORDS, OBJECT).map(
    lambda p: '<phrase>%s</phrase>%s' % p)
WELL_FORMED = st.tuples(
    st.sampled_from(['', '<grounding>', '<image></image><grounding>']),
    st.lists(st.one_of(WORDS, GROUNDED), max_size=6).map(''.join)).map(
    ''.join)


@SETTINGS
@given(WELL_FORMED)
def test_agrees_with_transformers_on_well_formed_output(text):
    processing = pytest.importorskip(
        'transformers.models.kosmos2.processing_kosmos2')
    caption, entities = grounding.parse(text)
    check_result(caption, entities)
    hf_caption, hf_entities = \
        processing.clean_text_and_extract_entities_with_bboxes(
            text.split('</image>')[-1])
    if not all(0 <= s <= e <= len(hf_caption) and hf_caption[s:e] == p
               for p, (s, e), _ in hf_entities):
        count('well-formed, transformers wrong (a span off its phrase)')
        return
    count('well-formed, compared with transformers')
    assert caption == hf_caption
    ours = [(e.phrase, tuple(e.span), [b.as_tuple() for b in e.boxes])
            for e in entities]
    theirs = [(p, tuple(s), [tuple(b) for b in boxes])
              for p, s, boxes in hf_entities]
    assert ours == theirs
