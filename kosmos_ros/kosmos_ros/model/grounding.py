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
Kosmos-2 grounding markup: parse it into phrases and boxes, and write it.

Kosmos-2 links a text span to image regions like a hyperlink::

    <phrase> a snowman</phrase><object><patch_index_0044><patch_index_0863></object>

Each box is a pair of location tokens on a 32x32 grid: the cell holding the
upper-left corner and the one holding the lower-right corner. This module is
pure Python (no torch, no rclpy) so it is cheap to test exhaustively.

Where transformers' ``post_process_generation`` answers, ``parse`` agrees
with it (caption, phrase, span, normalised box). It also handles what that
function gets wrong or drops: an ``<object>`` with no phrase (transformers
names it ``<patch_index_...>``; here it continues the previous phrase, or has
an empty phrase), output cut off mid-tag at ``max_new_tokens``, and corner
pairs given in the wrong order.
"""

from dataclasses import dataclass, field
import math
import re

GRID = 32  # location tokens per side: <patch_index_0000> .. <patch_index_1023>

_TAG = re.compile(r'<[^<>]*>')
_PATCH = re.compile(r'<patch_index_(\d+)>')
_CUT_TAG = re.compile(r'<[\w/]*$')  # a tag cut off by max_new_tokens


@dataclass
class Box:
    """A box in normalised [0, 1] image coordinates (x1, y1, x2, y2)."""

    x1: float
    y1: float
    x2: float
    y2: float
    # Ordinals (0-based, in order of appearance in the generated text) of the
    # two location tokens, so callers can look up the token probabilities.
    token_ordinals: tuple = ()

    def as_tuple(self):
        """Return (x1, y1, x2, y2)."""
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass
class Entity:
    """A grounded phrase: its text, its span in the caption, its boxes."""

    phrase: str
    span: tuple
    boxes: list = field(default_factory=list)


def patch_index_to_box(ul_idx, lr_idx, grid=GRID):
    """
    Map a pair of location tokens to a normalised box.

    Same rule as Kosmos-2's reference decoder: corners in the same row or
    column (or the same cell) span whole cells, otherwise cell centres.
    Columns and rows are sorted first, so a reversed pair gives the same box
    as the ordered one.
    """
    cell = 1.0 / grid
    ul_x, lr_x = sorted((ul_idx % grid, lr_idx % grid))
    ul_y, lr_y = sorted((ul_idx // grid, lr_idx // grid))
    if ul_x == lr_x or ul_y == lr_y:
        x1, y1 = ul_x * cell, ul_y * cell
        x2, y2 = lr_x * cell + cell, lr_y * cell + cell
    else:
        x1, y1 = ul_x * cell + cell / 2, ul_y * cell + cell / 2
        x2, y2 = lr_x * cell + cell / 2, lr_y * cell + cell / 2
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def box_to_patch_indices(box, grid=GRID):
    """
    Map a normalised (x1, y1, x2, y2) box to its pair of location tokens.

    The same rule as transformers' ``coordinate_to_patch_index``; the box must
    have x2 > x1 and y2 > y1 inside [0, 1].
    """
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        raise ValueError('box must have x2 > x1 and y2 > y1, got %r' % (box,))
    ul_x = min(max(math.floor(x1 * grid), 0), grid - 1)
    ul_y = min(max(math.floor(y1 * grid), 0), grid - 1)
    lr_x = min(max(math.ceil(x2 * grid - 1), 0), grid - 1)
    lr_y = min(max(math.ceil(y2 * grid - 1), 0), grid - 1)
    return ul_y * grid + ul_x, lr_y * grid + lr_x


def patch_token(index):
    """Return the location token for a grid cell index."""
    return '<patch_index_%04d>' % index


def parse(text):
    """
    Parse generated Kosmos-2 text into (caption, entities).

    ``text`` is the decoded sequence with tag tokens kept (anything before the
    last ``</image>`` is ignored, as transformers does). The caption is the
    text with every tag removed and outer whitespace stripped; each entity's
    span indexes into it. Only phrases with at least one complete box become
    entities; a box whose corner pair was cut off is dropped, and so is a
    location index outside the grid. A tag cut off at the end is dropped,
    and a lone ``<`` or ``>`` never reaches the caption or a phrase (so no
    tag can be re-assembled from the pieces around one).
    """
    text = text.split('</image>')[-1]
    text = _CUT_TAG.sub('', text)
    pieces = []  # plain-text pieces of the caption, in order
    length = 0  # length of the caption so far, before stripping
    entities = []
    phrase_start = None  # caption offset where an open <phrase> began
    last_phrase = None  # (phrase, start, end) of the last closed phrase
    last_entity = None  # entity the last </object> closed, for continuations
    in_object = False
    corners = []  # (index, ordinal) of location tokens in the open object
    boxes = []
    ordinal = 0
    pos = 0
    for match in _TAG.finditer(text):
        plain = _plain(text[pos:match.start()])
        if plain:
            pieces.append(plain)
            length += len(plain)
            if plain.strip():
                last_entity = None
                if phrase_start is None:
                    last_phrase = None
        pos = match.end()
        tag = match.group(0)
        patch = _PATCH.fullmatch(tag)
        if patch:
            index = int(patch.group(1))
            if index >= GRID * GRID:  # no such location token
                corners = []
                continue
            if in_object:
                corners.append((index, ordinal))
                if len(corners) == 2:
                    boxes.append(_box(corners))
            ordinal += 1
        elif tag == '<phrase>':
            phrase_start, last_phrase, last_entity = length, None, None
        elif tag == '</phrase>':
            if phrase_start is not None:
                last_phrase = (''.join(pieces)[phrase_start:], phrase_start,
                               length)
            phrase_start = None
        elif tag == '<object>':
            in_object, corners, boxes = True, [], []
        elif tag == '</delimiter_of_multi_objects/>':
            corners = []
        elif tag == '</object>':
            last_entity = _close_object(entities, last_phrase, last_entity,
                                        boxes, length)
            last_phrase = None
            in_object, corners, boxes = False, [], []
    # Text after the last tag; an object left open holds only complete boxes.
    pieces.append(_plain(text[pos:]))
    if in_object:
        _close_object(entities, last_phrase, last_entity, boxes, length)
    return _strip(''.join(pieces), entities)


def _plain(text):
    """Return text between tags without the brackets a tag is made of."""
    return text.replace('<', '').replace('>', '')


def _box(corners):
    (ul, ul_ord), (lr, lr_ord) = corners
    return Box(*patch_index_to_box(ul, lr), token_ordinals=(ul_ord, lr_ord))


def _close_object(entities, last_phrase, last_entity, boxes, offset):
    """Attach a finished object's boxes; return the entity they went to."""
    if not boxes:
        return last_entity
    if last_phrase is not None:
        phrase, start, end = last_phrase
        entity = Entity(phrase, (start, end), list(boxes))
        entities.append(entity)
        return entity
    if last_entity is not None:
        # "<phrase>a</phrase><object>A</object><object>B</object>": B is
        # another box of "a", not an entity named after its location tokens.
        last_entity.boxes.extend(boxes)
        return last_entity
    entity = Entity('', (offset, offset), list(boxes))
    entities.append(entity)
    return entity


def _strip(raw, entities):
    """Strip the caption and the phrases, keeping spans inside the caption."""
    lead = len(raw) - len(raw.lstrip())
    caption = raw.strip()
    for entity in entities:
        start, end = entity.span
        name = entity.phrase
        start += len(name) - len(name.lstrip()) - lead
        end -= len(name) - len(name.rstrip()) + lead
        start = min(max(start, 0), len(caption))
        entity.span = (start, min(max(end, start), len(caption)))
        entity.phrase = caption[entity.span[0]:entity.span[1]]
    return caption, entities


def to_pixels(box, width, height):
    """
    Map a normalised box to source-image pixels, clipped to the image.

    Kosmos-2's processor resizes the whole frame straight to 224x224 (no
    crop), so x scales by the width and y by the height independently.
    """
    x1, y1, x2, y2 = box.as_tuple() if isinstance(box, Box) else box
    return (min(max(x1 * width, 0.0), float(width)),
            min(max(y1 * height, 0.0), float(height)),
            min(max(x2 * width, 0.0), float(width)),
            min(max(y2 * height, 0.0), float(height)))
