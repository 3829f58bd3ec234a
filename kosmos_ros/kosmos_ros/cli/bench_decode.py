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
Decode speed per token: the HF recipe, our eager loop, static cache, compiled.

``python -m kosmos_ros.bench_decode [--layers 24 --hidden 32]`` makes random
checkpoints in a temp dir (the tiny 2-layer one and a "deep-narrow" one:
many layers, small width, where decoding is bound by host and dispatch
cost) and prints, in one run and one process, ms per generated token of:

1. ``model.generate`` as in the Kosmos-2 notebook (processor -> generate);
2. ``decoding.greedy_generate`` (eager, DynamicCache);
3. ``static_decode.StaticDecoder(compile=False)`` (static cache, eager);
4. ``StaticDecoder(compile=True)`` (one compiled graph per step);

with the compile warm-up seconds and whether all paths give the same
tokens. Per token means decode only: (t(N tokens) - t(1 token)) / (N - 1),
best of ``repeats``, so the prefill and the vision encoder cancel out; end
of sequence is disabled so every path makes N tokens.

``--full-size`` instead builds the real Kosmos-2 architecture with random
weights (``Kosmos2Config()``: 24 text layers of width 2048, ~1.6B
parameters, ~6.7 GB in fp32; not saved), times one 32-token caption with
greedy_generate and the compiled decoder, and compares ms per token with the
weight-streaming limit: the text model's weight bytes / memory bandwidth,
the bandwidth measured in the same run by a large tensor copy.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np

from ..model.defaults import DEFAULT_PROMPT


def _load():
    """Return the 1-minute load average (what else runs on the machine)."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        return float('nan')


def _timed(run, new_tokens, repeats, warm_many=True):
    """
    Decode-only ms per token of ``run(n)``, best of ``repeats``.

    Returns it, the seconds of that best ``new_tokens`` run, and its output.
    """
    run(1)
    out = run(new_tokens) if warm_many else None  # warm both lengths
    best = (float('inf'), 0.0)
    for _ in range(repeats):
        start = time.perf_counter()
        run(1)
        one = time.perf_counter() - start
        start = time.perf_counter()
        out = run(new_tokens)
        many = time.perf_counter() - start
        best = min(best, ((many - one) / (new_tokens - 1), many))
    return best[0] * 1000.0, best[1], out


def bench_decode(engine, new_tokens=32, repeats=5, prompt=DEFAULT_PROMPT,
                 hf_generate=True):
    """
    Time batch-1 decoding four ways on one engine; return a JSON-ready dict.

    Every path decodes the same prompt over the same image encoding; eos is
    disabled so each makes ``new_tokens`` tokens. ``token_identical`` says
    whether all paths produced the same tokens.
    """
    import torch
    from PIL import Image
    from ..model.decoding import encode_images, greedy_generate
    from ..model.static_decode import StaticDecoder

    model, processor = engine.model, engine.processor
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    inputs = processor(text=prompt, images=Image.fromarray(frame),
                       return_tensors='pt')
    inputs = {k: v.to(engine.device) for k, v in inputs.items()}
    pixels = inputs['pixel_values'].to(engine.dtype)
    with torch.no_grad():
        embeds = encode_images(model, pixels)
    prompts = [engine.prompt(prompt)]
    assert prompts[0].input_ids == inputs['input_ids'][0].tolist()
    width = len(prompts[0].input_ids)
    no_eos = -1
    results, tokens = {}, {}

    if hf_generate:
        def recipe(n):
            with torch.no_grad():
                out = model.generate(
                    pixel_values=pixels, input_ids=inputs['input_ids'],
                    attention_mask=inputs['attention_mask'],
                    image_embeds=None,
                    image_embeds_position_mask=inputs[
                        'image_embeds_position_mask'],
                    use_cache=True, max_new_tokens=n, min_new_tokens=n,
                    do_sample=False, num_beams=1,
                    pad_token_id=engine.pad_id)
            return out[0, width:].tolist()
        results['hf_generate_ms'], _, tokens['hf_generate'] = _timed(
            recipe, new_tokens, repeats)

    def greedy(n):
        return greedy_generate(model, embeds, prompts, n, no_eos,
                               engine.pad_id)[0].token_ids
    results['greedy_ms'], _, tokens['greedy'] = _timed(
        greedy, new_tokens, repeats)

    for name, compiled in (('static_eager', False), ('static_compiled', True)):
        decoder = StaticDecoder(model, compile=compiled)
        seconds = decoder.warmup(batch_sizes=(1,),
                                 lengths=(width + new_tokens - 1,))
        if compiled:
            results['compile_warmup_s'] = seconds

        def static(n, decoder=decoder):
            return decoder.generate(embeds, prompts, n, no_eos,
                                    engine.pad_id)[0].token_ids
        results[name + '_ms'], _, tokens[name] = _timed(
            static, new_tokens, repeats)
    results['speedup_compiled_vs_greedy'] = \
        results['greedy_ms'] / results['static_compiled_ms']
    results['token_identical'] = all(t == tokens['greedy']
                                     for t in tokens.values())
    results['tokens_differing'] = sorted(
        k for k, t in tokens.items() if t != tokens['greedy'])
    results.update(new_tokens=new_tokens, prompt_tokens=width,
                   threads=torch.get_num_threads(), load_1min=_load())
    return results


def memory_bandwidth_gbs(gib=1.0, repeats=5):
    """
    Memory bandwidth in GB/s from a large tensor copy (and a read-only sum).

    Returns (copy, read): copy counts read + write bytes over the time of
    ``dst.copy_(src)``; read is ``src.sum()`` (what streaming weights does).
    """
    import torch
    src = torch.ones(int(gib * (1 << 30)) // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    copy = read = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        copy = min(copy, time.perf_counter() - start)
        start = time.perf_counter()
        src.sum()
        read = min(read, time.perf_counter() - start)
    nbytes = src.numel() * 4
    return 2 * nbytes / copy / 1e9, nbytes / read / 1e9


def _text_weight_bytes(text_model):
    """Bytes of the text model's distinct parameters (tied ones once)."""
    seen, total = set(), 0
    for param in text_model.parameters():
        if param.data_ptr() not in seen:
            seen.add(param.data_ptr())
            total += param.numel() * param.element_size()
    return total


def bench_full_size(prompt_ids, image_mask, new_tokens=32, pad_id=1):
    """
    Random weights at the real Kosmos-2 size: ms per token vs the limit.

    ``prompt_ids``/``image_mask`` form one prompt (any tokenizer's ids below
    the real vocabulary fit). The model is created in fp32 from the default
    config, never saved.
    """
    import torch
    from transformers import Kosmos2Config, Kosmos2ForConditionalGeneration
    from ..model.decoding import encode_images, greedy_generate, Prompt
    from ..model.static_decode import StaticDecoder

    start = time.perf_counter()
    torch.manual_seed(0)
    model = Kosmos2ForConditionalGeneration._from_config(
        Kosmos2Config(), dtype=torch.float32).eval()
    made_s = time.perf_counter() - start
    weight_bytes = _text_weight_bytes(model.text_model)
    bandwidth, read_bandwidth = memory_bandwidth_gbs()
    with torch.no_grad():
        embeds = encode_images(model, torch.randn(1, 3, 224, 224))
    prompts = [Prompt(list(prompt_ids), list(image_mask))]
    width = len(prompt_ids)

    def timed(fn):  # one repeat: a full-size caption takes seconds
        return _timed(fn, new_tokens, 1, warm_many=False)

    greedy_ms, greedy_s, greedy_out = timed(
        lambda n: greedy_generate(model, embeds, prompts, n, -1, pad_id))
    decoder = StaticDecoder(model, compile=True)
    warm = decoder.warmup(batch_sizes=(1,), lengths=(width + new_tokens,))
    static_ms, static_s, static_out = timed(
        lambda n: decoder.generate(embeds, prompts, n, -1, pad_id))
    limit_ms = weight_bytes / (bandwidth * 1e9) * 1000.0
    return {
        'parameters': sum(p.numel() for p in model.parameters()),
        'model_made_s': made_s,
        'text_weight_gb': weight_bytes / 1e9,
        'bandwidth_gbs': bandwidth,
        'limit_ms_per_token': limit_ms,
        'read_bandwidth_gbs': read_bandwidth,
        'read_limit_ms_per_token': weight_bytes / (read_bandwidth * 1e9)
        * 1000.0,
        'greedy_ms': greedy_ms, 'greedy_caption_s': greedy_s,
        'static_compiled_ms': static_ms, 'static_caption_s': static_s,
        'compile_warmup_s': warm,
        'compiled_vs_limit': static_ms / limit_ms,
        'greedy_vs_limit': greedy_ms / limit_ms,
        'token_identical': greedy_out[0].token_ids == static_out[0].token_ids,
        'threads': torch.get_num_threads(), 'load_1min': _load(),
    }


def format_row(name, row):
    """One result as text."""
    if 'limit_ms_per_token' in row:
        return ('%s: %.0fM params, text weights %.2f GB, copy bandwidth %.1f'
                ' GB/s -> limit %.0f ms/token (read-only %.1f GB/s -> %.0f) '
                '| greedy %.0f ms/token (%.2fx limit)'
                ' | compiled %.0f ms/token (%.2fx limit), warm-up %.0f s | '
                'token-identical %s | threads %d, load %.2f' % (
                    name, row['parameters'] / 1e6, row['text_weight_gb'],
                    row['bandwidth_gbs'], row['limit_ms_per_token'],
                    row['read_bandwidth_gbs'],
                    row['read_limit_ms_per_token'],
                    row['greedy_ms'], row['greedy_vs_limit'],
                    row['static_compiled_ms'], row['compiled_vs_limit'],
                    row['compile_warmup_s'], row['token_identical'],
                    row['threads'], row['load_1min']))
    hf = ('HF generate %.2f | ' % row['hf_generate_ms']
          if 'hf_generate_ms' in row else '')
    return ('%s: ms/token %sgreedy %.2f | static eager %.2f | static '
            'compiled %.2f (%.1fx greedy) | compile warm-up %.1f s | '
            'token-identical %s%s | threads %d, load %.2f' % (
                name, hf, row['greedy_ms'], row['static_eager_ms'],
                row['static_compiled_ms'], row['speedup_compiled_vs_greedy'],
                row['compile_warmup_s'], row['token_identical'],
                ' (differ: %s)' % ', '.join(row['tokens_differing'])
                if row['tokens_differing'] else '',
                row['threads'], row['load_1min']))


def main(argv=None):
    """Make the checkpoints, run the benchmarks, print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--layers', type=int, default=24)
    parser.add_argument('--hidden', type=int, default=32)
    parser.add_argument('--new-tokens', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=0,
                        help='torch intra-op threads (0: torch default)')
    parser.add_argument('--full-size', action='store_true',
                        help='random weights at the real Kosmos-2 size')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
    import torch
    from ..model.engine import KosmosEngine
    from ..model.loading import ModelOptions
    from ..model.tiny import make_tiny_model
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = [('tiny', 2, 32),
                 ('deep-narrow', args.layers, args.hidden)]
        engines = {}
        for name, layers, hidden in sizes:
            path = make_tiny_model(os.path.join(tmp, name), hidden=hidden,
                                   layers=layers)
            engines[name] = KosmosEngine.load(ModelOptions(
                model=str(path), device='cpu'))
        if args.full_size:
            prompt = engines['tiny'].prompt(DEFAULT_PROMPT)
            engines.clear()
            report['full-size'] = bench_full_size(
                prompt.input_ids, prompt.image_mask, args.new_tokens)
        for name, engine in engines.items():
            report[name] = bench_decode(engine, args.new_tokens,
                                        args.repeats)
    for name, row in report.items():
        print(format_row(name, row))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(report, out, indent=2)
    return report


if __name__ == '__main__':
    main()
