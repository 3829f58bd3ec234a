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
"""Parsing Kosmos-2 grounding markup, checked against transformers where it answers."""

from kosmos_ros.model import grounding
import pytest

SNOWMAN = ('<grounding> An image of<phrase> a snowman</phrase><object>'
           '<patch_index_0044><patch_index_0863></object> warming himself by'
           '<phrase> a fire</phrase><object><patch_index_0005>'
           '<patch_index_0911></object>.')


def hf_parse(text):
    """Return what transformers' post_process_generation makes of ``text``."""
    processing = pytest.importorskip(
        'transformers.models.kosmos2.processing_kosmos2')
    text = text.split('</image>')[-1]
    return processing.clean_text_and_extract_entities_with_bboxes(text)


def as_hf(caption, entities):
    return caption, [(e.phrase, e.span, [b.as_tuple() for b in e.boxes])
                     for e in entities]


def test_snowman_example_from_the_docs():
    caption, entities = grounding.parse(SNOWMAN)
    assert caption == 'An image of a snowman warming himself by a fire.'
    assert [e.phrase for e in entities] == ['a snowman', 'a fire']
    assert entities[0].boxes[0].as_tuple() == (
        0.390625, 0.046875, 0.984375, 0.828125)
    assert caption[slice(*entities[0].span)] == 'a snowman'
    assert caption[slice(*entities[1].span)] == 'a fire'


@pytest.mark.parametrize('text', [
    SNOWMAN,
    '<grounding> An image of<phrase> two dogs</phrase><object>'
    '<patch_index_0010><patch_index_0300></delimiter_of_multi_objects/>'
    '<patch_index_0400><patch_index_0700></object> playing.',
    '<image>x</image><grounding>  A photo of<phrase> a cat</phrase><object>'
    '<patch_index_0000><patch_index_1023></object> and<phrase> a hat'
    '</phrase><object><patch_index_0033><patch_index_0033></object>  ',
    'plain caption without grounding',
    '<grounding> A<phrase> tall tree</phrase><object><patch_index_0002>'
    '<patch_index_0962></object> in a field',
])
def test_agrees_with_transformers_on_well_formed_output(text):
    assert as_hf(*grounding.parse(text)) == hf_parse(text)


def test_several_boxes_for_one_phrase():
    text = ('<phrase> two dogs</phrase><object><patch_index_0010>'
            '<patch_index_0300></delimiter_of_multi_objects/>'
            '<patch_index_0400><patch_index_0700></object>')
    _, (entity,) = grounding.parse(text)
    assert entity.phrase == 'two dogs'
    assert len(entity.boxes) == 2
    assert [b.token_ordinals for b in entity.boxes] == [(0, 1), (2, 3)]


def test_phrase_without_object_stays_text_only():
    caption, entities = grounding.parse(
        '<grounding> A<phrase> red cup</phrase> on a table')
    assert caption == 'A red cup on a table'
    assert entities == []


def test_object_without_phrase_is_not_named_after_its_tokens():
    text = ('<grounding> There is<object><patch_index_0044>'
            '<patch_index_0863></object> here')
    _, hf_entities = hf_parse(text)
    # transformers invents a phrase out of the location tokens...
    assert hf_entities[0][0] == '<patch_index_44><patch_index_863>'
    caption, (entity,) = grounding.parse(text)
    # ...we keep the box, with an empty phrase at its place in the caption.
    assert entity.phrase == ''
    assert caption == 'There is here'
    assert entity.span == (len('There is'), len('There is'))
    assert entity.boxes[0].as_tuple() == hf_entities[0][2][0]


def test_second_object_after_a_phrase_continues_that_phrase():
    text = ('<phrase> a dog</phrase><object><patch_index_0044>'
            '<patch_index_0863></object><object><patch_index_0001>'
            '<patch_index_0100></object> runs')
    _, hf_entities = hf_parse(text)
    assert [e[0] for e in hf_entities] == [
        'a dog', '<patch_index_1><patch_index_100>']
    _, entities = grounding.parse(text)
    assert [e.phrase for e in entities] == ['a dog']
    assert len(entities[0].boxes) == 2


@pytest.mark.parametrize('cut, boxes', [
    ('<phrase> a dog</phrase><object><patch_index_0044>', 0),
    ('<phrase> a dog</phrase><object><patch_index_0044><patch_index_0863>',
     1),
    ('<phrase> a dog</phrase><object><patch_index_0044><patch_index_0863>'
     '</delimiter_of_multi_objects/><patch_index_0001>', 1),
    ('<phrase> a dog</phrase><object>', 0),
    ('<phrase> a do', 0),
])
def test_output_cut_off_at_max_new_tokens(cut, boxes):
    caption, entities = grounding.parse('<grounding> An image of' + cut)
    assert caption.startswith('An image of a d')
    assert '<' not in caption
    assert sum(len(e.boxes) for e in entities) == boxes
    if boxes:
        assert entities[0].phrase == 'a dog'


def test_reversed_corner_pair_gives_a_valid_box():
    x1, y1, x2, y2 = grounding.patch_index_to_box(863, 44)
    assert x1 < x2 and y1 < y2
    assert (x1, y1, x2, y2) == grounding.patch_index_to_box(44, 863)


def test_box_round_trips_through_patch_indices():
    ul, lr = grounding.box_to_patch_indices(
        (0.390625, 0.046875, 0.984375, 0.828125))
    assert (ul, lr) == (44, 863)
    assert grounding.patch_index_to_box(ul, lr) == (
        0.390625, 0.046875, 0.984375, 0.828125)


def test_box_to_patch_indices_matches_transformers():
    processing = pytest.importorskip(
        'transformers.models.kosmos2.processing_kosmos2')
    for box in [(0.0, 0.0, 1.0, 1.0), (0.1, 0.2, 0.3, 0.4),
                (0.5, 0.5, 0.51, 0.52), (0.390625, 0.046875, 0.984375, 0.8)]:
        assert grounding.box_to_patch_indices(box) == \
            processing.coordinate_to_patch_index(box, 32)


def test_to_pixels_scales_each_axis_and_clips():
    box = grounding.Box(0.25, 0.5, 1.0, 1.0)
    assert grounding.to_pixels(box, 640, 480) == (160.0, 240.0, 640.0, 480.0)
    assert grounding.to_pixels((-0.1, 0.0, 1.2, 0.5), 100, 50) == (
        0.0, 0.0, 100.0, 25.0)


# -- hostile and cut-off outputs (each failed before the fix) -----------------

def test_a_location_tag_cut_off_leaves_no_fragment():
    caption, entities = grounding.parse(
        '<grounding>An image of<phrase> a cup</phrase><object>'
        '<patch_index_02')
    assert caption == 'An image of a cup'
    assert entities == []


def test_a_pair_reversed_in_one_row_gives_the_two_cells():
    (entity,) = grounding.parse('<phrase>a</phrase><object><patch_index_0001>'
                                '<patch_index_0000></object>')[1]
    (ordered,) = grounding.parse('<phrase>a</phrase><object>'
                                 '<patch_index_0000><patch_index_0001>'
                                 '</object>')[1]
    assert entity.boxes[0].as_tuple() == ordered.boxes[0].as_tuple() == (
        0.0, 0.0, 2 / 32, 1 / 32)


def test_location_indices_off_the_grid_are_dropped():
    caption, entities = grounding.parse(
        '<phrase>a</phrase><object><patch_index_1024><patch_index_5000>'
        '</object> and<phrase> b</phrase><object><patch_index_0000>'
        '<patch_index_0033></object>')
    assert [e.phrase for e in entities] == ['b']
    # The off-grid tags did not shift the ordinals of the real ones.
    assert entities[0].boxes[0].token_ordinals == (0, 1)


def test_a_span_never_points_past_the_caption():
    caption, entities = grounding.parse(
        'x <object><patch_index_0000><patch_index_0033></object>')
    assert caption == 'x'
    assert entities[0].span == (1, 1) and entities[0].phrase == ''


@pytest.mark.parametrize('text', [
    '<ima<phrase></phrase>ge> a <b>cat</b>',
    '<grounding><phrase> a <cup> </phrase><object><patch_index_0000>'
    '<patch_index_0033></object>',
    'a < b > c',
])
def test_brackets_in_text_never_make_a_tag(text):
    caption, entities = grounding.parse(text)
    assert '<' not in caption and '>' not in caption
    assert all('<' not in e.phrase and '>' not in e.phrase for e in entities)
