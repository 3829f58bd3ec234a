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
"""Draw grounded boxes and their phrases on an image (for humans, not planners)."""

import zlib

import cv2

_COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
           (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)]


def label_colour(label):
    """Return an (r, g, b) 0-255 colour that is the same for a label always."""
    return _COLORS[zlib.crc32(label.encode('utf-8')) % len(_COLORS)]


def annotate(image, result, bgr=False, min_score=0.0):
    """
    Return a copy of ``image`` with each box of ``result`` drawn and labelled.

    ``image`` is HxWx3 uint8, RGB unless ``bgr``; ``result`` a GroundedText.
    One colour per entity, label "phrase score"; boxes scoring below
    ``min_score`` are not drawn.
    """
    out = image.copy()
    thickness = max(1, round(min(out.shape[:2]) / 300))
    scale = max(0.4, min(out.shape[:2]) / 900)
    for index, entity in enumerate(result.entities):
        color = _COLORS[index % len(_COLORS)]
        if bgr:
            color = color[::-1]
        for box in entity.boxes:
            if box.score < min_score:
                continue
            p1 = (int(round(box.x1)), int(round(box.y1)))
            p2 = (int(round(box.x2)) - 1, int(round(box.y2)) - 1)
            cv2.rectangle(out, p1, p2, color, thickness)
            label = '%s %.2f' % (entity.phrase or '?', box.score)
            (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX,
                                           scale, thickness)
            top = max(p1[1] - h - base, 0)
            cv2.rectangle(out, (p1[0], top), (p1[0] + w, top + h + base),
                          color, -1)
            cv2.putText(out, label, (p1[0], top + h), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
