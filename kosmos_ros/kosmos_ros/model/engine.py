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
Grounded captioning of camera frames with one Kosmos-2 model (no ROS).

The engine owns the model and its processor. It turns frames into grounded
results: the caption, and per phrase its span and boxes in the source
image's pixels with a score. Everything ROS-specific lives in ``ros``.

Box score: the geometric mean of the probabilities the model gave the box's
two location tokens (upper-left and lower-right corner) when it chose them,
each a softmax over the whole vocabulary at that step. 1.0 means the model
was certain of both corners; it is never a constant.
"""

from collections import OrderedDict
from dataclasses import dataclass
import functools
import math
import threading
import time

import numpy as np

from . import grounding, questions
from .decoding import encode_images, greedy_generate, Prompt
from .defaults import DEFAULT_PROMPT, MAX_NEW_TOKENS_LIMIT
from .loading import load_model, ModelOptions, precision_conflict
from .preprocess import check_frame, Preprocessor

LOCATE_TOKENS = 32  # enough for ten boxes of one phrase


@dataclass
class PixelBox:
    """One grounded box in source pixels, with the model's score."""

    phrase: str
    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    def xyxy(self):
        """Return [x1, y1, x2, y2]."""
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass
class GroundedText:
    """The result for one frame: clean text, entities and raw model text."""

    text: str
    entities: list
    raw: str
    width: int
    height: int
    num_tokens: int = 0

    def boxes(self):
        """All boxes of all entities, flat, in caption order."""
        return [box for entity in self.entities for box in entity.boxes]

    def to_dict(self):
        """JSON-ready form: text and per box the phrase, xyxy and score."""
        return {
            'caption': self.text,
            'width': self.width, 'height': self.height,
            'entities': [{'phrase': e.phrase, 'span': list(e.span),
                          'boxes': [{'bbox': b.xyxy(), 'score': b.score}
                                    for b in e.boxes]}
                         for e in self.entities],
            'boxes': [{'phrase': b.phrase, 'bbox': b.xyxy(),
                       'score': b.score} for b in self.boxes()],
        }


class KosmosEngine:
    """Kosmos-2 model, processor and the per-frame pipeline around them."""

    def __init__(self, model, processor, device, dtype, max_pixels=0):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = device
        self.dtype = dtype
        self.preprocess = Preprocessor(processor.image_processor, max_pixels)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        vocab = self.tokenizer.convert_tokens_to_ids(
            [grounding.patch_token(0),
             grounding.patch_token(grounding.GRID ** 2 - 1)])
        self._patch_ids = range(vocab[0], vocab[1] + 1)
        self._eoi_id = self.tokenizer.convert_tokens_to_ids('</image>')
        self._object_end_id = self.tokenizer.convert_tokens_to_ids('</object>')
        self._prompts = OrderedDict()  # LRU cache of tokenised prompts
        self._prompt_lock = threading.Lock()
        self._blank = None
        self.decoder = None  # StaticDecoder when compiled, else the eager loop

    @classmethod
    def load(cls, options=None, max_pixels=0, log=None, compile='off',  # noqa: A002
             warm=True):
        """
        Load a checkpoint (see ModelOptions) and wrap it.

        ``log(text)`` hears what is loaded and how long it took. ``compile``
        'on' decodes with the static-cache compiled step, warmed up here
        unless ``warm`` is False: then ``prepare`` must run on the thread
        that generates. Raises ModelLoadError (with how to fix it) or
        ValueError.
        """
        options = options or ModelOptions()
        why = precision_conflict(options.dtype, options.quantization,
                                 compile == 'on')
        if why:
            raise ValueError(why)
        log = log or (lambda text: None)
        log('loading model %s (device %s, dtype %s, quantization %s) ...' % (
            options.model, options.device, options.dtype,
            options.quantization))
        start = time.monotonic()
        engine = cls(*load_model(options), max_pixels=max_pixels)
        log('model loaded on %s (%s) in %.1f s' % (
            engine.device, str(engine.dtype).replace('torch.', ''),
            time.monotonic() - start))
        if str(engine.device) == 'cpu':
            from .cpu_gemv import status
            ready, why = status()
            log('decode kernel: gemv.c, %s' % why if ready else
                "decode kernel: ATen's (gemv.c unavailable: %s)" % why)
            if options.quantization == 'w8a8' and ready:
                from .int8_weights import OUTLIER_THRESHOLD
                log('vision tower and prefill: int8 GEMMs (activations '
                    'rounded per row, columns reaching %g in fp32)'
                    % OUTLIER_THRESHOLD)
            elif options.quantization == 'w8a8':
                log('vision tower and prefill: bf16 GEMMs, as int8wo (w8a8 '
                    'rounds its activations in gemv.c)')
        if compile == 'on':
            engine.compile_decoder(log, warm=warm)
        return engine

    def compile_decoder(self, log=None, warm=True):
        """Decode with the static-cache step; compile it now if ``warm``."""
        from .static_decode import StaticDecoder
        self.decoder = StaticDecoder(self.model, compile=True)
        if warm:
            self.prepare(log=log)

    def prepare(self, new_tokens=(), prompt=DEFAULT_PROMPT, log=None,
                on_cold_shape=None):
        """
        Warm the compiled step on this thread for every batch bucket.

        ``new_tokens``: the most new tokens each kind of request asks for,
        counted after a prompt as long as ``prompt``; the 256-slot bucket
        is always warmed. Shapes already warm on this thread are skipped,
        so a restarted worker thread pays only what its own CUDA graphs
        need. ``on_cold_shape(batch, slots, seconds)`` hears of a shape
        compiled later, while serving. A no-op without a compiled decoder.
        """
        from .static_decode import BATCH_BUCKETS, MIN_LENGTH
        if self.decoder is None or not self.decoder.compiled:
            return 0.0
        self.decoder.on_cold_shape = on_cold_shape
        log = log or (lambda text: None)
        width = len(self.prompt(prompt).input_ids)
        lengths = {MIN_LENGTH} | {width + n - 1 for n in new_tokens}
        log('compiling the decode step for batch %s ...' % '/'.join(
            map(str, BATCH_BUCKETS)))
        seconds = self.decoder.warmup(BATCH_BUCKETS, sorted(lengths))
        log('decode step compiled in %.1f s (%d shapes)' % (
            seconds, len(self.decoder.shapes())))
        return seconds

    # -- inputs ------------------------------------------------------------
    def pixel_values(self, frames, bgr=False):
        """Preprocess frames to a tensor on the model's device and dtype."""
        return self.preprocess(frames, bgr=bgr).to(self.device, self.dtype)

    def encode(self, frames, bgr=False):
        """Vision encoding of frames: (N, latent, dim), reusable per frame."""
        return encode_images(self.model, self.pixel_values(frames, bgr))

    def prompt(self, text, bboxes=None):
        """
        Tokenise a prompt exactly as the HF processor does for one image.

        ``bboxes`` (normalised, one per ``<phrase>`` in ``text``) become
        location tokens after their phrase. Results are cached by content.
        """
        key = (text, repr(bboxes))
        with self._prompt_lock:
            if key in self._prompts:
                self._prompts.move_to_end(key)
                return self._prompts[key]
        if self._blank is None:
            size = self.preprocess.size
            self._blank = np.zeros((size[1], size[0], 3), np.uint8)
        encoded = self.processor(text=text, images=self._blank,
                                 bboxes=bboxes)
        prompt = Prompt(list(encoded['input_ids']),
                        list(encoded['image_embeds_position_mask']))
        with self._prompt_lock:
            self._prompts[key] = prompt
            while len(self._prompts) > 64:
                self._prompts.popitem(last=False)
        return prompt

    # -- generation ----------------------------------------------------------
    def generate(self, image_embeds, prompts, sizes, max_new_tokens,
                 should_stop=None, with_prompt=True, stop_ids=(),
                 on_step=None):
        """
        Generate for prompts over encoded images; return GroundedText each.

        ``sizes`` gives each source image's (width, height) for the boxes.
        ``with_prompt`` keeps the prompt's words in the text (captions);
        boxes only ever come from generated location tokens. A row also
        ends at any of ``stop_ids``. ``should_stop`` and ``on_step`` are
        the decoders' (``decoding.greedy_generate``).
        """
        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError('max_new_tokens must be in [1, %d], got %r'
                             % (MAX_NEW_TOKENS_LIMIT, max_new_tokens))
        decode = self.decoder.generate if self.decoder is not None else \
            functools.partial(greedy_generate, self.model)
        outputs = decode(image_embeds, prompts, max_new_tokens, self.eos_id,
                         self.pad_id, should_stop=should_stop,
                         stop_ids=stop_ids, on_step=on_step)
        return [self.parse(prompt, out, size, with_prompt)
                for prompt, out, size in zip(prompts, outputs, sizes)]

    def caption(self, frames, prompt=DEFAULT_PROMPT, max_new_tokens=64,
                bgr=False, should_stop=None, image_embeds=None):
        """
        Grounded captions of frames (HxWx3 uint8), one batch.

        ``image_embeds`` (from ``encode``) skips the vision encoder.
        """
        if isinstance(prompt, str):
            prompt = [prompt] * len(frames)
        embeds = self.encode(frames, bgr) if image_embeds is None \
            else image_embeds
        prompts = [self.prompt(text) for text in prompt]
        sizes = [(f.shape[1], f.shape[0]) for f in frames]
        return self.generate(embeds, prompts, sizes, max_new_tokens,
                             should_stop)

    def ask(self, frame, question, region=(0, 0, 0, 0), history=(),
            max_new_tokens=32, bgr=False, image_embeds=None,
            max_chars=questions.MAX_TEXT_CHARS, max_history=None,
            should_stop=None, on_step=None):
        """
        Answer a question about a pixel region of a frame (zero = whole image).

        Returns a GroundedText whose text is the answer alone and whose
        entities are the phrases grounded in it. ``image_embeds`` (1, ...)
        reuses an encoding of this frame. Raises RequestError for a request
        that cannot be served (empty or over-long text, too much history).
        ``should_stop()`` is polled per token (a cancelled request ends at
        its next one); ``on_step(tokens, answer)`` hears every token: the
        count so far and a function returning the answer so far.
        """
        history = questions.check_question(question, history, max_chars,
                                           max_history)
        check_frame(frame, self.preprocess.max_pixels)
        height, width = frame.shape[:2]
        box = questions.region_to_normalized(region, width, height)
        text = questions.question_prompt(question, box is not None, history)
        prompt = self.prompt(text, [box] if box is not None else None)
        if image_embeds is None:
            image_embeds = self.encode([frame], bgr)
        (result,) = self.generate(
            image_embeds, [prompt], [(width, height)], max_new_tokens,
            should_stop, with_prompt=False,
            on_step=self._stepper(on_step, questions.clean_answer))
        result.text = questions.clean_answer(result.text)
        result.entities = [e for e in result.entities
                           if e.span[1] <= len(result.text)]
        return result

    def locate(self, frame, phrase, max_new_tokens=LOCATE_TOKENS, bgr=False,
               image_embeds=None, max_chars=questions.MAX_TEXT_CHARS,
               should_stop=None, on_step=None):
        """
        Ground a phrase in a frame: its boxes in pixels, with scores.

        ``should_stop`` and ``on_step`` as for ``ask`` (the text so far is
        the phrase's, once the model has written it).
        """
        return self.locate_many(frame, [phrase], max_new_tokens, bgr,
                                image_embeds, max_chars, should_stop,
                                on_step)[0]

    def locate_many(self, frame, phrases, max_new_tokens=LOCATE_TOKENS,
                    bgr=False, image_embeds=None,
                    max_chars=questions.MAX_TEXT_CHARS, should_stop=None,
                    on_step=None):
        """Ground several phrases in one frame: one encoding, one batch."""
        questions.check_phrases(phrases, max_chars)
        check_frame(frame, self.preprocess.max_pixels)
        if image_embeds is None:
            image_embeds = self.encode([frame], bgr)
        height, width = frame.shape[:2]
        return self.ground(image_embeds, [(width, height)], phrases,
                           max_new_tokens, should_stop,
                           self._stepper(on_step))[0]

    def _stepper(self, on_step, clean=None):
        """Adapt ``on_step(tokens, text)`` to the decoders' row hook."""
        if on_step is None:
            return None

        def step(count, read):
            def text():
                raw = self.tokenizer.decode(read()[0],
                                            skip_special_tokens=True)
                plain = grounding.parse(raw)[0]
                return clean(plain) if clean else plain
            on_step(count, text)
        return step

    def ground(self, image_embeds, sizes, phrases,
               max_new_tokens=LOCATE_TOKENS, should_stop=None, on_step=None):
        """
        Ground every phrase in every encoded frame, all in one batch.

        Returns, per frame (``sizes``: its width and height), a GroundedText
        per phrase whose entities hold only the boxes the model attached to
        that phrase: none when it does not ground it (no guess). A row ends
        at ``</object>``, after which nothing belongs to the phrase. Exact
        batching makes every result the one ``locate`` gives alone.
        """
        count = len(phrases)
        prompts = [self.prompt(questions.locate_prompt(p)) for p in phrases]
        results = self.generate(
            image_embeds.repeat_interleave(count, dim=0),
            prompts * len(sizes), [size for size in sizes for _ in phrases],
            max_new_tokens, should_stop, stop_ids=(self._object_end_id,),
            on_step=on_step)
        for result in results:
            result.entities = result.entities[:1] if result.entities and \
                result.entities[0].span[0] == 0 else []
        return [results[k * count:(k + 1) * count] for k in range(len(sizes))]

    def parse(self, prompt, out, size, with_prompt=True):
        """Parse (prompt tail +) generated tokens into a GroundedText."""
        # A caption keeps the prompt's words ("An image of ..."), as the HF
        # recipe does; an answer is only what was generated. Boxes come only
        # from generated location tokens.
        tail = []
        if with_prompt:
            tail = prompt.input_ids[prompt.input_ids.index(self._eoi_id) + 1:]
        ids = tail + out.token_ids
        probs = [None] * len(tail) + out.probs
        raw = self.tokenizer.decode(ids, skip_special_tokens=True)
        text, entities = grounding.parse(raw)
        # Probability of each location token, by order of appearance.
        loc_probs = [p for i, p in zip(ids, probs) if i in self._patch_ids]
        width, height = size
        result = []
        for entity in entities:
            boxes = []
            for box in entity.boxes:
                corner = [loc_probs[k] for k in box.token_ordinals]
                if any(p is None for p in corner):
                    continue  # a box the caller wrote into the prompt
                score = math.sqrt(corner[0] * corner[1])
                boxes.append(PixelBox(entity.phrase,
                                      *grounding.to_pixels(box, width, height),
                                      score=score))
            if boxes:
                result.append(grounding.Entity(entity.phrase, entity.span,
                                               boxes))
        return GroundedText(text, result, raw, width, height,
                            num_tokens=len(out.token_ids))
