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
kosmos_node's parameters: the one place holding names, defaults, ranges.

The node declares exactly these, the launch files offer each as an
argument (``LAUNCH``), kosmos_ros/doc/parameters.md is generated from it, and a test
checks ``config/kosmos.yaml`` against ``PARAMETERS``. Validation lives here too, so a bad
start-up value and a bad runtime value get the same one-line reason, and
everything is checked before the model loads. No rclpy.
"""

from dataclasses import dataclass
import math
import re

from ..model.defaults import DEFAULT_PROMPT, MAX_NEW_TOKENS_LIMIT
from ..model.loading import (ATTENTION, DEFAULT_MODEL, DTYPES,
                             ModelOptions, precision_conflict, QUANTIZATIONS)
from ..model.questions import check_phrase, MAX_PHRASES, MAX_TEXT_CHARS, \
    RequestError

MAX_PROMPT_CHARS = 1000
MAX_CAMERAS = 64
MODES = ('captions', 'queries', 'both')  # what a processed frame gets
_TOPIC = re.compile(r'^~?/?[A-Za-z_][\w{}]*(/[A-Za-z_][\w{}]*)*$')


class ConfigError(ValueError):
    """Parameter values the node cannot run with; the message says which."""


@dataclass(frozen=True)
class Param:
    """One parameter: default, description and what values it accepts."""

    name: str
    default: object
    description: str
    runtime: bool = False  # settable while the node runs
    low: float = None  # inclusive range of a number
    high: float = None
    choices: tuple = ()

    @property
    def kind(self):
        """Return the value's Python type: bool, int, float, str or list."""
        return type(self.default)

    def check(self, value):
        """Return why ``value`` is not acceptable, or None."""
        kind = self.kind
        if kind is float and isinstance(value, int) and \
                not isinstance(value, bool):
            value = float(value)  # `ros2 param set /kosmos rate 2`
        if kind is list:
            if not isinstance(value, (list, tuple)) or \
                    not all(isinstance(v, str) for v in value):
                return 'must be a list of strings, got %r' % (value,)
        elif not isinstance(value, kind) or (
                kind is int and isinstance(value, bool)):
            return 'must be %s, got %r' % (_KIND_NAMES[kind], value)
        if kind is float and not math.isfinite(value):
            return 'must be a finite number, got %r' % value
        if self.low is not None and not self.low <= value <= self.high:
            return 'must be in [%s, %s], got %r' % (self.low, self.high, value)
        if self.choices and value not in self.choices:
            return 'must be one of %s, got %r' % (', '.join(self.choices),
                                                  value)
        extra = _EXTRA_CHECKS.get(self.name)
        return extra(value) if extra else None

    def coerce(self, value):
        """Return a checked value in the parameter's own type."""
        return float(value) if self.kind is float else \
            list(value) if self.kind is list else value


_KIND_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number',
               str: 'a string'}


def _check_prompt(value):
    if not value.strip() or len(value) > MAX_PROMPT_CHARS:
        return 'must be a non-empty string of at most %d characters, got ' \
            '%d characters' % (MAX_PROMPT_CHARS, len(value))
    return None


def _check_device(value):
    if value in ('auto', 'cpu', 'cuda') or re.fullmatch(r'cuda:\d+', value):
        return None
    return 'must be auto, cpu, cuda or cuda:N, got %r' % value


def _check_topics(value):
    if not value or len(value) > MAX_CAMERAS:
        return 'must list 1 to %d image topics, got %d' % (
            MAX_CAMERAS, len(value))
    if len(set(value)) != len(value):
        return 'must list distinct topics, got %r' % (list(value),)
    bad = [t for t in value if not _TOPIC.match(t)]
    if bad:
        return 'has invalid topic names %r' % bad
    return None


def _check_model(value):
    return None if value.strip() else 'must name a hub id or a local folder'


def check_queries(queries, max_chars=MAX_TEXT_CHARS):
    """Return why a standing query list is unusable, or None (empty = off)."""
    if len(queries) > MAX_PHRASES:
        return 'must list at most %d queries, got %d' % (MAX_PHRASES,
                                                         len(queries))
    twice = sorted({q for q in queries if queries.count(q) > 1})
    if twice:
        return 'must list distinct queries; given more than once: %s' % (
            ', '.join(map(_shorten, twice)))
    for query in queries:
        try:
            check_phrase(query, max_chars)
        except RequestError as error:
            return 'has an unusable query %s: %s' % (_shorten(query), error)
    return None


def _cross_checks(values):
    why = check_queries(values['queries'], values['max_question_chars'])
    yield why and "parameter 'queries' %s" % why
    depth = values['depth_topics']
    if depth and len(depth) != len(values['image_topics']):
        yield "parameter 'depth_topics' must list one depth topic (or \"\") " \
            'per image topic, %d, got %d' % (len(values['image_topics']),
                                             len(depth))
    bad = [t for t in depth if t and not _TOPIC.match(t)]
    yield bad and "parameter 'depth_topics' has invalid topic names %r" % bad
    why = precision_conflict(values['dtype'], values['quantization'],
                             values['compile'])
    yield why and "parameters 'dtype', 'quantization' and 'compile': %s" % \
        why
    if values['depth_min'] >= values['depth_max']:
        yield "parameters 'depth_min' (%g) and 'depth_max' (%g) leave no " \
            'valid depth' % (values['depth_min'], values['depth_max'])


def _shorten(text, limit=40):
    return repr(text if len(text) <= limit else text[:limit - 3] + '...')


def _check_frame_id(value):
    if value and not re.fullmatch(r'[A-Za-z0-9_/.\-]+', value):
        return 'must be a TF frame id (letters, digits, _ / . -), got %r' % (
            value,)
    return None


_EXTRA_CHECKS = {'prompt': _check_prompt, 'device': _check_device,
                 'image_topics': _check_topics, 'model': _check_model,
                 'target_frame': _check_frame_id}

PARAMETERS = {p.name: p for p in [
    # -- model (loaded on activate) ------------------------------------------
    Param('model', DEFAULT_MODEL, 'Hugging Face hub id or local checkpoint '
          'folder of a Kosmos-2 model (never remote code).'),
    Param('device', 'auto', 'auto, cpu, cuda or cuda:N (auto = cuda if '
          'available).'),
    Param('dtype', 'auto', 'auto, fp32, fp16 or bf16 (auto = fp16 on CUDA, '
          'fp32 on CPU, bf16 with int8wo or w8a8).', choices=DTYPES),
    Param('quantization', 'none', 'none, int8wo, w8a8, 8bit or 4bit: the '
          'text decoder in int8 weights with bf16 arithmetic (int8wo); w8a8 '
          'also the vision encoder, with int8 GEMMs for the vision tower and '
          'prefill (CPU only, the fastest caption there); or bitsandbytes '
          '(CUDA or x86-64 CPU) int8 (with dtype fp16) or NF4, the vision '
          'tower kept in dtype.', choices=QUANTIZATIONS),
    Param('attn_implementation', 'auto', 'Attention kernel: auto, eager or '
          'sdpa.', choices=ATTENTION),
    Param('local_files_only', False, 'Never contact the model hub (use the '
          'local cache or folder only).'),
    Param('allow_unsafe_pickle', False, 'UNSAFE: also load pickle weights '
          '(pytorch_model.bin), which can run code; only for checkpoints you '
          'trust. Off: safetensors only.'),
    Param('compile', False, 'Decode with a static KV cache and a '
          'torch.compile step (true/on: compiled for batch 1/2/4/8 at '
          'activate, which takes seconds to minutes and is logged) or the '
          'eager loop (false/off). Same tokens either way.'),
    Param('keep_model_loaded', False, 'Keep the model in memory across '
          'deactivate (faster re-activate); false frees it, GPU memory '
          'included.'),
    Param('autostart', True, 'Configure and activate at start-up; false '
          'waits for `ros2 lifecycle set` (or a lifecycle manager).'),
    # -- cameras -------------------------------------------------------------
    Param('image_topics', ['image_raw'], 'Image topics to caption; a topic '
          'ending in /compressed is read as sensor_msgs/CompressedImage. '
          'Outputs go next to the resolved (remapped) topic.'),
    Param('image_qos', 'auto', 'Reliability of the image subscriptions: auto '
          '(match the publishers), reliable or best_effort.',
          choices=('auto', 'reliable', 'best_effort')),
    Param('lazy', True, 'Subscribe to a camera only while someone subscribes '
          'to its outputs.'),
    Param('publish_annotated', True, 'Offer <topic>/kosmos/annotated (drawn '
          'only while subscribed).'),
    Param('publish_markers', True, 'Offer <topic>/kosmos/markers on cameras '
          'with depth: a box and a label per 3D detection, for RViz (made '
          'only while subscribed).'),
    Param('marker_lifetime', 1.0, 'Seconds a marker stays in RViz unless a '
          'newer frame replaces it.', runtime=True, low=0.01, high=3600.0),
    Param('max_image_pixels', 50_000_000, 'Larger images are dropped.',
          low=1, high=1_000_000_000),
    Param('frame_timeout', 5.0, 'Seconds without a frame on a camera that '
          'has listeners before /diagnostics warns.', runtime=True, low=0.1,
          high=3600.0),
    # -- captioning ------------------------------------------------------------
    Param('prompt', DEFAULT_PROMPT, 'Prompt for captions; keep <grounding> to '
          'get boxes.', runtime=True),
    Param('max_new_tokens', 64, 'Most tokens generated per caption.',
          runtime=True, low=1, high=MAX_NEW_TOKENS_LIMIT),
    Param('rate', 2.0, 'Most caption batches per second, all cameras together '
          '(0 = as fast as the model goes).', runtime=True, low=0.0,
          high=1000.0),
    Param('max_batch', 1, 'Most cameras captioned together in one batch.',
          low=1, high=MAX_CAMERAS),
    # -- standing queries and track ids ----------------------------------------
    Param('queries', [], 'Phrases grounded in every processed frame, '
          'published on <topic>/kosmos/queries with the phrase as class_id '
          '(at most %d; empty = off). Also set by ~/set_queries.'
          % MAX_PHRASES, runtime=True),
    Param('min_score', 0.0, 'Least box score (the probability the model '
          'gave its location tokens, 0-1) for a detection to be published on '
          'any output: detections, queries, 3D, markers, annotated; '
          'LabelInfo.threshold carries it. Ask/Locate return every box.',
          runtime=True, low=0.0, high=1.0),
    Param('mode', 'both', 'What each processed frame gets: captions, queries '
          'or both.', runtime=True, choices=MODES),
    Param('track_max_age', 2.0, 'Seconds (of frame stamps) a track id lives '
          'unseen before it is retired; ids are never reused.', runtime=True,
          low=0.0, high=3600.0),
    Param('track_min_iou', 0.2, 'Least box overlap (IoU) for a detection to '
          'keep the id of a track with the same phrase.', runtime=True,
          low=0.0, high=1.0),
    # -- depth: 3D positions of grounded boxes ----------------------------------
    Param('depth_topics', [], 'Depth images aligned to the colour cameras, '
          'one per entry of image_topics in order ("" for a camera without '
          'depth; empty = off). 16UC1 (depth_scale metres per unit) or 32FC1 '
          '(metres); the CameraInfo is the sibling camera_info topic.'),
    Param('depth_scale', 0.001, 'Metres per unit of a 16UC1 depth image.',
          low=1e-6, high=1.0),
    Param('depth_min', 0.1, 'Nearest valid depth (m); nearer, 0 and NaN are '
          'invalid.', runtime=True, low=0.0, high=1000.0),
    Param('depth_max', 20.0, 'Farthest valid depth (m).', runtime=True,
          low=0.0, high=1000.0),
    Param('depth_slop', 0.05, 'Most seconds between the stamps of a colour '
          'frame and the depth frame paired with it.', runtime=True, low=0.0,
          high=10.0),
    Param('target_frame', '', 'TF frame for 3D detections (e.g. base_link); '
          "empty = the depth camera's optical frame.", runtime=True),
    # -- services and actions ----------------------------------------------------
    Param('service_timeout', 30.0, 'Seconds an Ask/Locate service call or '
          'action goal may take, waiting included; then it fails and its '
          'generation stops.', runtime=True, low=0.1, high=3600.0),
    Param('max_calls', 32, 'Most Ask/Locate service calls and action goals '
          'queued or running at once (each holds a frame until answered); '
          'more are refused at once.', runtime=True, low=1, high=10_000),
    Param('feedback_rate', 10.0, 'Most feedback messages a second per '
          'Ask/Locate action goal (state changes always go; 0 = one per '
          'token).', runtime=True, low=0.0, high=1000.0),
    Param('max_question_chars', MAX_TEXT_CHARS, 'Longest question, phrase or '
          'history turn accepted.', low=1, high=100_000),
    Param('answer_max_new_tokens', 32, 'Tokens per answer when a request '
          'says 0.', runtime=True, low=1, high=MAX_NEW_TOKENS_LIMIT),
    Param('max_answer_tokens', 128, 'Most tokens a request may ask for.',
          low=1, high=MAX_NEW_TOKENS_LIMIT),
    Param('max_history', 8, 'Most earlier question/answer turns per '
          'request.', low=0, high=100),
]}

# Every parameter is a launch argument (each overrides the YAML file only
# when given).
LAUNCH = tuple(PARAMETERS)


@dataclass(frozen=True)
class Config:
    """Checked values of every parameter, by name (``config.rate``)."""

    values: dict

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def from_values(cls, values):
        """Check ``{name: value}`` (missing = default); raise ConfigError."""
        unknown = sorted(set(values) - set(PARAMETERS))
        if unknown:
            raise ConfigError('unknown parameters: %s' % ', '.join(unknown))
        errors, checked = [], {}
        for name, param in PARAMETERS.items():
            value = values.get(name, param.default)
            why = param.check(value)
            if why:
                errors.append("parameter '%s' %s" % (name, why))
            else:
                checked[name] = param.coerce(value)
        if not errors:  # checks that involve two parameters
            errors = [why for why in _cross_checks(checked) if why]
        if errors:
            raise ConfigError('; '.join(errors))
        return cls(checked)

    def model_options(self):
        """How to load the model, from these values."""
        return ModelOptions(
            model=self.model, device=self.device, dtype=self.dtype,
            quantization=self.quantization,
            attn_implementation=self.attn_implementation,
            local_files_only=self.local_files_only,
            allow_unsafe_pickle=self.allow_unsafe_pickle)


def yaml_value(value):
    """Render a default as config/kosmos.yaml writes it."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, list):
        return '[%s]' % ', '.join(value)
    return str(value)
