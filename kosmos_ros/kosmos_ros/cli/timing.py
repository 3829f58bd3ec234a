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
Decode timing shared by ``bench --decode`` and ``doctor``: one method.

Both report decode-only milliseconds per token the same way, so their
figures compare; this module is that one way, and the machine's load beside
it.
"""

import os
import time


def load_1min():
    """Return the 1-minute load average (what else runs on the machine)."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        return float('nan')


# Rounds, per repeat, timed_per_token may add where noise hides the decode.
EXTRA_ROUNDS = 4


def timed_per_token(run, new_tokens, repeats, warm_many=True):
    """
    Decode-only ms per token of ``run(n)``, best of ``repeats``.

    (best t(new_tokens) - best t(1)) / (new_tokens - 1): the prefill and the
    vision encoder cancel out, and each best is taken on its own, so one
    slow run (a busy machine) cannot make the difference negative. Where
    the noise still hides the decode (a tiny model on a busy machine: the
    best long run no longer than the best short one), it takes up to
    ``EXTRA_ROUNDS`` x ``repeats`` more rounds; past them the result is 0.
    Returns it, the seconds of the best ``new_tokens`` run, and that run's
    output.
    """
    run(1)
    out = run(new_tokens) if warm_many else None  # warm both lengths
    best = {1: float('inf'), new_tokens: float('inf')}
    for round_ in range(repeats * (1 + EXTRA_ROUNDS)):
        if round_ >= repeats and best[new_tokens] > best[1]:
            break
        for n in best:
            start = time.perf_counter()
            result = run(n)
            best[n] = min(best[n], time.perf_counter() - start)
            out = result if n == new_tokens else out
    per_token = max(best[new_tokens] - best[1], 0.0) / (new_tokens - 1)
    return per_token * 1000.0, best[new_tokens], out


def caption_split(engine, frame, prompt, new_tokens, generate=None):
    """
    Where one caption's time goes: ms per stage, the engine's own calls.

    Stages: preprocess (resize, normalise), vision (tower and projection),
    prefill (the prompt through the text model, first token included),
    decode (ms per later token) and parse (tokens to text and boxes).
    Prefill and decode are read from one generation's step times (so noise
    between two runs cannot make a decode negative). ``generate`` is the
    decoder (``engine.generate``'s default: the compiled step where the
    engine has one). End of sequence is disabled, so the caption is
    ``new_tokens`` long; ``caption_ms`` adds the stages up. Best of 2 each.
    """
    import torch
    from ..model.decoding import encode_images, greedy_generate

    def sync():
        if str(engine.device).startswith('cuda'):
            torch.cuda.synchronize(engine.device)
    if generate is None:
        generate = engine.decoder.generate if engine.decoder is not None \
            else lambda *args, **kwargs: greedy_generate(engine.model, *args,
                                                         **kwargs)
    prompts = [engine.prompt(prompt)]
    times = {}

    def timed(name, call):
        best = float('inf')
        for _ in range(2):  # the first run may warm caches or shapes
            start = time.perf_counter()
            out = call()
            sync()
            best = min(best, time.perf_counter() - start)
        times[name] = best * 1000.0
        return out

    def stepped():
        marks = []

        def on_step(count, read):
            sync()
            marks.append(time.perf_counter())
        start = time.perf_counter()
        out = generate(embeds, prompts, new_tokens, -1, engine.pad_id,
                       on_step=on_step)
        return out, (marks[0] - start) * 1000.0, (
            (marks[-1] - marks[0]) * 1000.0 / max(len(marks) - 1, 1))
    with torch.no_grad():
        pixels = timed('preprocess_ms', lambda: engine.pixel_values([frame]))
        embeds = timed('vision_ms', lambda: encode_images(engine.model,
                                                          pixels))
        runs = [stepped() for _ in range(2)]
    out = runs[0][0][0]
    times['prefill_ms'] = min(run[1] for run in runs)
    times['decode_ms_per_token'] = min(run[2] for run in runs)
    size = (frame.shape[1], frame.shape[0])
    timed('parse_ms', lambda: engine.parse(prompts[0], out, size))
    times['caption_ms'] = times['preprocess_ms'] + times['vision_ms'] + \
        times['prefill_ms'] + times['decode_ms_per_token'] * (
            new_tokens - 1) + times['parse_ms']
    times['new_tokens'] = new_tokens
    return times
