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
Grounded questions and phrase grounding: prompts and request validation.

Kosmos-2 answers about a region when the region's box follows a
``<phrase>`` in the prompt::

    <grounding> Question: What is<phrase> this object</phrase><object>
    <patch_index_..><patch_index_..></object>? Answer:

Callers write plain questions; this module attaches the region by a fixed
rule (``mark_region``):

1. a question that already has ``<phrase>..</phrase>`` keeps it (exactly one);
2. else the first demonstrative - this, that, these, those - with the word
   after it when that word is a noun-like word: "Is this door open?" ->
   "Is<phrase> this door</phrase> open?", "What is this?" -> "What
   is<phrase> this</phrase>?";
3. else the first "it": "What colour is it?" -> "What colour is<phrase>
   it</phrase>?";
4. else a referring phrase in front: "What colour is the car?" ->
   "About<phrase> this object</phrase>: What colour is the car?".

A zero region means the whole image: plain visual question answering, with
no phrase. Earlier question/answer pairs are prepended in the same
"Question: .. Answer: .." form (the BLIP-2 chat pattern).
"""

import math
import re

from .grounding import box_to_patch_indices

DEFAULT_REFERENT = 'this object'
MAX_TEXT_CHARS = 500  # longest question, phrase or history turn by default
MAX_PHRASES = 16  # most phrases grounded in one batch
_DEMONSTRATIVE = re.compile(r'\b(this|that|these|those)\b(\s+([A-Za-z][\w-]*))?',
                            re.IGNORECASE)
_IT = re.compile(r'\bit\b', re.IGNORECASE)
# Words after a demonstrative that do not belong to its noun phrase.
_NOT_NOUN = {
    'is', 'are', 'was', 'were', 'be', 'been', 'has', 'have', 'had', 'do',
    'does', 'did', 'can', 'could', 'will', 'would', 'should', 'may', 'might',
    'must', 'a', 'an', 'the', 'and', 'or', 'but', 'of', 'in', 'on', 'at',
    'to', 'for', 'with', 'from', 'by', 'made', 'used', 'called', 'look',
    'looks', 'mean', 'means', 'one', 'ones', 'here', 'there', 'made',
}


class RequestError(ValueError):
    """A request that cannot be served; the message says why."""


def mark_region(question):
    """Return ``question`` with exactly one ``<phrase>`` for the region."""
    marked = question.count('<phrase>')
    if marked or '</phrase>' in question:
        if marked != 1 or question.count('</phrase>') != 1:
            raise RequestError('a question may mark at most one '
                               '<phrase>..</phrase> for the region')
        return question
    match = _DEMONSTRATIVE.search(question)
    if match:
        start, end = match.span(1)
        word = match.group(3)
        if word and word.lower() not in _NOT_NOUN:
            end = match.end(3)
        return _wrap(question, start, end)
    match = _IT.search(question)
    if match:
        return _wrap(question, *match.span())
    return 'About<phrase> %s</phrase>: %s' % (DEFAULT_REFERENT, question)


def _wrap(text, start, end):
    before = text[:start].rstrip()
    return '%s<phrase> %s</phrase>%s' % (before, text[start:end], text[end:])


def check_text(name, text, max_chars):
    """Refuse empty, over-long or markup-bearing user text."""
    if not isinstance(text, str) or not text.strip():
        raise RequestError('%s is empty' % name)
    if len(text) > max_chars:
        raise RequestError('%s is %d characters, more than the %d allowed'
                           % (name, len(text), max_chars))


def check_no_markup(name, text):
    """Refuse Kosmos-2 tags where the caller must write plain text."""
    if '<' in text or '>' in text:
        raise RequestError('%s must be plain text (no "<" or ">")' % name)


def check_phrase(phrase, max_chars=MAX_TEXT_CHARS):
    """Refuse a locate phrase that is empty, too long or carries markup."""
    check_text('phrase', phrase, max_chars)
    check_no_markup('phrase', phrase)


def check_phrases(phrases, max_chars=MAX_TEXT_CHARS):
    """Refuse an empty or too long list of phrases, or any bad phrase."""
    if not 1 <= len(phrases) <= MAX_PHRASES:
        raise RequestError('give 1 to %d phrases, got %d' % (MAX_PHRASES,
                                                             len(phrases)))
    for phrase in phrases:
        check_phrase(phrase, max_chars)


def check_question(question, history=(), max_chars=MAX_TEXT_CHARS,
                   max_history=None):
    """
    Refuse an empty or over-long question or history; return the history.

    ``history`` is a sequence of (question, answer) pairs; ``max_history``
    (None = no limit) bounds how many.
    """
    check_text('question', question, max_chars)
    history = [tuple(turn) for turn in history]
    if any(len(turn) != 2 for turn in history):
        raise RequestError('history turns must be (question, answer) pairs')
    if max_history is not None and len(history) > max_history:
        raise RequestError('%d history turns, more than max_history (%d)'
                           % (len(history), max_history))
    for q, a in history:
        check_text('a history question', q, max_chars)
        check_text('a history answer', a, max_chars)
    return history


def region_to_normalized(box, width, height):
    """
    Validate a pixel box (x1, y1, x2, y2) and normalise it to [0, 1].

    Returns None for the whole image (an all-zero box). A box reaching
    outside the image is clipped to it; a box with NaN/inf, x2 <= x1 or
    y2 <= y1, or none of its area inside the image is refused.
    """
    if all(v == 0 for v in box):
        return None
    if not all(math.isfinite(v) for v in box):
        raise RequestError('region has a NaN or infinite coordinate: %r'
                           % (tuple(box),))
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise RequestError('region must have x2 > x1 and y2 > y1 (a positive '
                           'area), got (%g, %g, %g, %g)' % (x1, y1, x2, y2))
    cx1, cy1 = max(x1, 0.0), max(y1, 0.0)
    cx2, cy2 = min(x2, float(width)), min(y2, float(height))
    if cx2 <= cx1 or cy2 <= cy1:
        raise RequestError('region (%g, %g, %g, %g) lies outside the %dx%d '
                           'image' % (x1, y1, x2, y2, width, height))
    normalized = (cx1 / width, cy1 / height, cx2 / width, cy2 / height)
    box_to_patch_indices(normalized)  # same validity rule as the processor
    return normalized


def question_prompt(question, has_region, history=()):
    """
    Build the grounded QA prompt; the region's box follows its phrase.

    ``history`` is a sequence of (question, answer) pairs asked before.
    """
    turns = ''.join(' Question: %s Answer: %s' % (q.strip(), _sentence(a))
                    for q, a in history)
    text = question.strip()
    if has_region:
        text = mark_region(text)
    elif '<phrase>' in text:
        raise RequestError('<phrase> markup needs a region')
    return '<grounding>%s Question: %s Answer:' % (turns, text)


def _sentence(answer):
    answer = answer.strip()
    return answer if answer[-1:] in '.!?' else answer + '.'


def locate_prompt(phrase):
    """
    Build the phrase-grounding prompt; the open ``<object>`` asks for boxes.

    The model continues with location tokens (and
    ``</delimiter_of_multi_objects/>`` between several boxes) for the phrase.
    """
    return '<grounding><phrase> %s</phrase><object>' % phrase.strip()


def clean_answer(text):
    """Cut an answer where the model starts a new question."""
    return text.split('Question:')[0].strip()
