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
"""Track ids on scripted sequences: stable, new, retired, never reused."""

from kosmos_ros.pipeline.tracking import iou, normalise, Tracker


def box(x, y, size=40):
    return (x, y, x + size, y + size)


def test_phrases_are_normalised_for_matching():
    assert normalise('A red cup.') == normalise('the red cup') == 'red cup'
    assert normalise('The  Door-handle') == 'door handle'
    assert normalise('cup') != normalise('red cup')


def test_iou():
    assert iou(box(0, 0), box(0, 0)) == 1.0
    assert iou(box(0, 0), box(100, 100)) == 0.0
    assert abs(iou(box(0, 0), box(20, 0)) - 1 / 3) < 1e-9


def test_a_moving_object_keeps_its_id_though_the_wording_changes():
    tracker = Tracker()
    ids = [tracker.update([(phrase, box(10 + 8 * k, 50))], k * 0.5)[0]
           for k, phrase in enumerate(['a cup', 'the cup', 'A cup.', 'cup'])]
    assert ids == [1, 1, 1, 1]


def test_crossing_objects_keep_their_own_ids():
    tracker = Tracker()
    seen = []
    for k in range(11):  # the cup goes right, the bowl left; they cross
        x = 10 * k
        seen.append(tracker.update([('a cup', box(x, 50)),
                                    ('a bowl', box(100 - x, 50))], k * 0.1))
    assert all(ids == [1, 2] for ids in seen)


def test_one_that_leaves_and_returns_within_max_age_keeps_its_id():
    tracker = Tracker(max_age=2.0)
    assert tracker.update([('a dog', box(0, 0))], 0.0) == [1]
    assert tracker.update([], 1.0) == []
    assert tracker.update([('a dog', box(5, 0))], 1.9) == [1]
    # Gone longer than max_age: retired, and the id is not reused.
    assert tracker.update([], 3.0) == []
    assert tracker.update([('a dog', box(5, 0))], 4.5) == [2]


def test_two_of_the_same_phrase_get_two_ids_that_stay_apart():
    tracker = Tracker()
    for k in range(5):
        ids = tracker.update([('a cup', box(10 + 2 * k, 0)),
                              ('a cup', box(200 - 2 * k, 0))], k * 0.2)
        assert ids == [1, 2]
    # Listed in the other order, each still gets its own.
    assert tracker.update([('a cup', box(192, 0)), ('a cup', box(18, 0))],
                          1.0) == [2, 1]


def test_a_different_phrase_in_the_same_place_is_a_new_track():
    tracker = Tracker()
    assert tracker.update([('a cup', box(0, 0))], 0.0) == [1]
    assert tracker.update([('a hat', box(0, 0))], 0.1) == [2]


def test_a_jump_beyond_min_iou_is_a_new_track():
    tracker = Tracker(min_iou=0.2)
    assert tracker.update([('a cup', box(0, 0))], 0.0) == [1]
    assert tracker.update([('a cup', box(300, 300))], 0.1) == [2]


def test_standing_queries_match_only_the_same_query():
    # A query is the class: "the cup" and "a cup" are two queries, two ids.
    tracker = Tracker(key=str)
    assert tracker.update([('a cup', box(0, 0)), ('the cup', box(0, 0))],
                          0.0) == [1, 2]
    assert tracker.update([('the cup', box(2, 0)), ('a cup', box(2, 0))],
                          0.1) == [2, 1]


def test_stamps_that_jump_back_start_over_with_new_ids():
    # A bag played again: what was seen "later" is not current.
    tracker = Tracker(max_age=2.0)
    assert tracker.update([('a cup', box(0, 0))], 100.0) == [1]
    assert tracker.update([('a cup', box(0, 0))], 100.5) == [1]
    assert tracker.update([('a cup', box(0, 0))], 10.0) == [2]
    assert tracker.update([('a cup', box(0, 0))], 10.5) == [2]
    # A frame slightly out of order is not a jump.
    assert tracker.update([('a cup', box(0, 0))], 10.2) == [2]
