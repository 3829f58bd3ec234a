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
Stable ids for grounded boxes across one camera's frames (no ROS).

The rule, for each new frame:

1. phrases are normalised (lower case, punctuation and leading articles and
   determiners dropped: "A red cup." and "the red cup" are both "red cup"),
   so captions that word the same thing differently still match;
2. a box may only continue a live track with the same normalised phrase;
3. among those, pairs are taken greedily by box overlap (IoU), highest
   first, down to ``min_iou``; each track and each box is used once;
4. an unmatched box starts a new track with a new id; a track not seen for
   ``max_age`` seconds is retired, and its id is never reused.

Standing queries match on the query exactly (``key=str``): the query is the
class. Time is the frames' own stamps; stamps that jump back by more than
``max_age`` (a bag played again) retire every track.

Kosmos-2 boxes are coarse (1/32 of the frame per cell), so ``min_iou``
defaults low (0.2): a cup that moves by a cell or two keeps its id.
"""

from dataclasses import dataclass
import re

_ARTICLES = {'a', 'an', 'the', 'this', 'that', 'these', 'those', 'some'}
_WORD = re.compile(r'[a-z0-9]+')


def normalise(phrase):
    """Return the phrase as tracks compare it ("The red cup." -> "red cup")."""
    words = _WORD.findall(phrase.lower())
    while words and words[0] in _ARTICLES:
        words = words[1:]
    return ' '.join(words)


def iou(a, b):
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) \
        - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One entity followed across frames."""

    id: int  # noqa: A003 (the message field's name)
    key: str  # normalised phrase
    box: tuple
    last_seen: float


class Tracker:
    """Assign stable ids to one camera's (phrase, box) detections."""

    def __init__(self, max_age=2.0, min_iou=0.2, key=normalise):
        self.max_age = max_age
        self.min_iou = min_iou
        self.key = key
        self.tracks = []
        self._next_id = 1
        self._latest = None

    def update(self, detections, stamp):
        """
        Return one id per (phrase, (x1, y1, x2, y2)) of a frame at ``stamp``.

        ``stamp`` is the frame's time in seconds (its header stamp), so the
        rule holds however late the frame is processed.
        """
        if self._latest is not None and stamp < self._latest - self.max_age:
            self.tracks = []  # time went back: nothing seen is current
        self._latest = stamp
        self.tracks = [t for t in self.tracks
                       if stamp - t.last_seen <= self.max_age]
        keys = [self.key(phrase) for phrase, _ in detections]
        pairs = sorted(
            ((iou(box, track.box), d, t)
             for d, (_, box) in enumerate(detections)
             for t, track in enumerate(self.tracks)
             if track.key == keys[d]),
            key=lambda p: -p[0])
        ids = [None] * len(detections)
        used = set()
        for overlap, d, t in pairs:
            if overlap < self.min_iou:
                break
            if ids[d] is not None or t in used:
                continue
            used.add(t)
            track = self.tracks[t]
            track.box, track.last_seen = tuple(detections[d][1]), stamp
            ids[d] = track.id
        for d, (_, box) in enumerate(detections):
            if ids[d] is None:
                track = Track(self._next_id, keys[d], tuple(box), stamp)
                self._next_id += 1
                self.tracks.append(track)
                ids[d] = track.id
        return ids
