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

``python -m kosmos_ros.cli.bench_decode [--layers 24 --hidden 32]`` makes
random checkpoints in a temp dir (the tiny 2-layer one and a "deep-narrow" one:
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

``--full-size`` instead writes the real Kosmos-2 architecture with random
weights (``Kosmos2Config()``: 24 text layers of width 2048, ~1.66B
parameters, saved in fp16) and measures it as ``kosmos-ros doctor`` does,
on the CPU, in fp32, bf16, int8 weight-only (bf16), LLM.int8 (fp16) and NF4
(bf16): ms per token of the eager loop and of the compiled step (and
whether its tokens are eager's), a caption's split by stage and the
recommended format; the per-token times are set against the
weight-streaming limit, the text model's weight bytes in that format over
the memory's *read* bandwidth measured in the same run. Streaming weights
only reads them, so that is the floor no decoder can go below; a copy's
bandwidth (read + write) would put it too low.
"""

import argparse
import json
import os
import tempfile

import numpy as np

from .timing import load_1min, timed_per_token
from ..model.defaults import DEFAULT_PROMPT


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
        results['hf_generate_ms'], _, tokens['hf_generate'] = timed_per_token(
            recipe, new_tokens, repeats)

    def greedy(n):
        return greedy_generate(model, embeds, prompts, n, no_eos,
                               engine.pad_id)[0].token_ids
    results['greedy_ms'], _, tokens['greedy'] = timed_per_token(
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
        results[name + '_ms'], _, tokens[name] = timed_per_token(
            static, new_tokens, repeats)
    # (None where timing noise hid the compiled decode: 0 ms a token.)
    results['speedup_compiled_vs_greedy'] = (
        results['greedy_ms'] / results['static_compiled_ms']
        if results['static_compiled_ms'] > 0 else None)
    results['token_identical'] = all(t == tokens['greedy']
                                     for t in tokens.values())
    results['tokens_differing'] = sorted(
        k for k, t in tokens.items() if t != tokens['greedy'])
    results.update(new_tokens=new_tokens, prompt_tokens=width,
                   threads=torch.get_num_threads(), load_1min=load_1min())
    return results


def bench_full_size(new_tokens=32):
    """Run doctor's CPU rows on random full-size weights; return its report."""
    from . import doctor
    return doctor.run(device='cpu', new_tokens=new_tokens,
                      budget_s=float('inf'), log=lambda text: None)


def rows_by_name(report):
    """Key the doctor report's rows by "dtype/quantization"."""
    return {'%s/%s' % (row['dtype'], row['quantization']): dict(
        row, read_bandwidth_gbs=report['read_bandwidth_gbs'])
        for row in report['rows']}


def format_row(name, row):
    """One result as text."""
    if 'limit_ms_per_token' in row:
        if 'error' in row:
            return '%s: %s' % (name, row['verdict'])
        compiled = row.get('compiled_ms_per_token')
        same = row.get('compiled_same_tokens')
        return ('full size %s: model %.2f GB, read %.1f GB/s -> limit %.0f '
                'ms/token | eager %.0f ms/token (%.2fx limit) | compiled %s%s '
                '| %s' % (
                    name, row['memory_gb'], row['read_bandwidth_gbs'],
                    row['limit_ms_per_token'], row['eager_ms_per_token'],
                    row['eager_ms_per_token'] / row['limit_ms_per_token'],
                    '%.0f ms/token (%.2fx limit), warm-up %.0f s' % (
                        compiled, compiled / row['limit_ms_per_token'],
                        row['compile_s']) if compiled is not None
                    else 'refused (%s)' % row['compiled'],
                    '' if same is None else ", tokens identical to eager's"
                    if same else ", tokens differ from eager's from token %s"
                    % row.get('compiled_first_difference'),
                    row['verdict']))
    hf = ('HF generate %.2f | ' % row['hf_generate_ms']
          if 'hf_generate_ms' in row else '')
    return ('%s: ms/token %sgreedy %.2f | static eager %.2f | static '
            'compiled %.2f (%s greedy) | compile warm-up %.1f s | '
            'token-identical %s%s | threads %d, load %.2f' % (
                name, hf, row['greedy_ms'], row['static_eager_ms'],
                row['static_compiled_ms'],
                '-' if row['speedup_compiled_vs_greedy'] is None
                else '%.1fx' % row['speedup_compiled_vs_greedy'],
                row['compile_warmup_s'], row['token_identical'],
                ' (differ: %s)' % ', '.join(row['tokens_differing'])
                if row['tokens_differing'] else '',
                row['threads'], row['load_1min']))


def main(argv=None):
    """Make the checkpoints, run the benchmarks, print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--layers', type=int, default=24)
    parser.add_argument('--hidden', type=int, default=32)
    parser.add_argument('--new-tokens', type=int, default=None,
                        help="default 32; 16 with --full-size (doctor's)")
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
    report, full = {}, None
    if args.new_tokens is None:
        args.new_tokens = 16 if args.full_size else 32
    if args.full_size:
        full = bench_full_size(args.new_tokens)
        report.update(rows_by_name(full))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            sizes = [('tiny', 2, 32),
                     ('deep-narrow', args.layers, args.hidden)]
            for name, layers, hidden in sizes:
                path = make_tiny_model(os.path.join(tmp, name),
                                       hidden=hidden, layers=layers)
                engine = KosmosEngine.load(ModelOptions(model=str(path),
                                                        device='cpu'))
                report[name] = bench_decode(engine, args.new_tokens,
                                            args.repeats)
    for name, row in report.items():
        print(format_row(name, row))
    if full is not None:
        from . import doctor
        print("\nWhere a caption's time goes (%d new tokens):\n%s\n%s" % (
            args.new_tokens, doctor.split_table(full['rows']),
            doctor.recommendation_line(full)))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(report, out, indent=2)
    return report


if __name__ == '__main__':
    main()
