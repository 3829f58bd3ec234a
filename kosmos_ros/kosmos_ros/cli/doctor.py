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
``kosmos-ros doctor``: what this machine does with Kosmos-2, in one table.

For each dtype and quantization the device supports it loads the model
through the node's own loader, then measures: load time, memory (VRAM on
CUDA, weight bytes on the CPU), one caption, ms per token of the eager loop
and of the compiled step (CUDA graphs on a GPU), the weight-streaming limit
(text weight bytes / the device's read bandwidth, measured in the same run:
no decoder can beat it), agreement of its tokens with fp32's, batch-4
throughput, and whether deactivating (EngineSlot.free) leaves any parameter
reachable and memory behind. Each row ends in a verdict: OK, WARN (why) or
FAIL (the error). No model: random weights at the real size, written to a
temporary folder so quantization loads through from_pretrained as a hub
model would; no hub is contacted. ``--budget-s`` (default 480) skips the
rows that would not fit, saying so. Random weights make the timings and
memory real and the captions noise; agreement of a quantized row is then a
measure of numeric drift only - give ``--model`` for a quality figure.
"""

import json
import os
import tempfile
import time
import weakref

import numpy as np

from .timing import timed_per_token
from ..model.defaults import DEFAULT_PROMPT

CUDA_ROWS = [('fp32', 'none'), ('fp16', 'none'), ('bf16', 'none'),
             ('bf16', 'int8wo'), ('fp16', '8bit'), ('fp16', '4bit')]
# fp32 first (the reference), then the likeliest fastest: rows past the
# time budget are skipped (on the project's 2-core CPU the default budget
# measured all six in 414 s, but not 4bit's compiled step).
CPU_ROWS = [('fp32', 'none'), ('bf16', 'w8a8'), ('bf16', 'int8wo'),
            ('bf16', 'none'), ('fp16', '8bit'), ('bf16', '4bit')]
AGREEMENT = 0.9  # least share of fp32's tokens an unquantized row repeats
# Largest relative error of the next-token logits against fp32's, over
# AGREEMENT_FRAMES fixed frames, for a row to be recommended. Measured on
# random full-size weights (2026-12-04, CPU, three runs): bf16 0.017, int8wo
# 0.032-0.036, w8a8 0.041-0.046, LLM.int8 0.040-0.043, NF4 0.29-0.31 - the
# bound keeps NF4 out.
LOGIT_ERROR_BOUND = 0.05
AGREEMENT_FRAMES = 4
# A row whose best ms/token is this far over its read limit is warned about:
# its kernels, not the memory, set its pace on this device.
FAR_FROM_LIMIT = 2.0


def read_bandwidth_gbs(device, gib=1.0, repeats=5):
    """
    GB/s of the fastest full read of a large tensor on ``device``.

    Two readers, the faster counts: a sum, and a matrix-vector product over
    the tensor as a (rows, 4096) matrix - what a batch-1 decode step does
    with every weight. On this project's 2-core CPU a sum reads at ~20 GB/s
    and the product at ~30: a sum alone would put the limit too high.
    """
    import torch
    src = torch.ones(int(gib * (1 << 30)) // 4, dtype=torch.float32,
                     device=device)
    matrix = src.view(-1, 4096)
    vector = torch.ones(4096, device=device)
    best = float('inf')
    for _ in range(repeats):
        for read in (src.sum, lambda: torch.mv(matrix, vector)):
            _sync(device)
            start = time.perf_counter()
            read()
            _sync(device)
            best = min(best, time.perf_counter() - start)
    return src.numel() * 4 / best / 1e9


def _sync(device):
    import torch
    if str(device).startswith('cuda'):
        torch.cuda.synchronize(device)


def device_line(device):
    """Describe the device: name, driver and torch's build."""
    import torch
    if device.startswith('cuda'):
        props = torch.cuda.get_device_properties(device)
        driver = torch._C._cuda_getDriverVersion()
        return '%s, %.0f GiB, driver %d.%d, CUDA %s, torch %s' % (
            props.name, props.total_memory / 2 ** 30, driver // 1000,
            driver % 1000 // 10, torch.version.cuda, torch.__version__)
    name = 'CPU'
    try:
        with open('/proc/cpuinfo') as info:
            name = next(line.split(':', 1)[1].strip() for line in info
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return '%s, %d cores, %d torch threads, torch %s' % (
        name, os.cpu_count() or 0, torch.get_num_threads(), torch.__version__)


def memory_bytes(engine, device):
    """VRAM allocated on CUDA; elsewhere the model's weight bytes."""
    import torch
    if device.startswith('cuda'):
        _sync(device)
        return torch.cuda.memory_allocated(device)
    return sum(t.numel() * t.element_size() for t in
               list(engine.model.parameters()) + list(engine.model.buffers()))


def text_weight_bytes(text_model):
    """
    Bytes a decode step reads: the text model's distinct parameters.

    Tied ones count once; the token embedding table counts only where it is
    lm_head's weight too (a step gathers one row of it; int8wo gives lm_head
    its own int8 copy).
    """
    embed = text_model.model.embed_tokens.weight
    head = getattr(text_model.lm_head, 'weight', None)
    seen, total = set(), 0
    if head is None or head.data_ptr() != embed.data_ptr():
        seen.add(embed.data_ptr())
    for param in text_model.parameters():
        if param.data_ptr() not in seen:
            seen.add(param.data_ptr())
            total += param.numel() * param.element_size()
    return total


def write_random_model(folder, tiny=False):
    """
    Write a random Kosmos-2 checkpoint: the real size, or a tiny one.

    The tokenizer and processor are the tiny checkpoint's (real prompt
    layout); at the real size the weights come from ``Kosmos2Config()``,
    saved in fp16 as safetensors.
    """
    from ..model.tiny import make_tiny_model
    if tiny:  # width 64: bitsandbytes' CPU 4-bit wants rows of >= 64
        return make_tiny_model(folder, hidden=64)
    import torch
    from transformers import (AutoProcessor, Kosmos2Config,
                              Kosmos2ForConditionalGeneration)
    small = make_tiny_model(os.path.join(folder, 'processor'))
    torch.manual_seed(0)
    model = Kosmos2ForConditionalGeneration._from_config(
        Kosmos2Config(), dtype=torch.float16)
    out = os.path.join(folder, 'full-size')
    model.save_pretrained(out)
    AutoProcessor.from_pretrained(small, backend='pil').save_pretrained(out)
    return out


def agreement(tokens, reference):
    """Share of ``reference``'s tokens repeated before the first change."""
    same = 0
    for a, b in zip(tokens, reference):
        if a != b:
            break
        same += 1
    return same / max(len(reference), 1)


def next_token_logits(engine, frames, prompt=DEFAULT_PROMPT):
    """fp32 logits of the token after ``prompt``, one row per frame."""
    import torch
    from ..model.decoding import _collate, position_ids
    prompts = [engine.prompt(prompt)] * len(frames)
    ids, attn, img_mask = _collate(prompts, engine.pad_id, engine.device)
    text = engine.model.text_model
    with torch.no_grad():
        out = text(input_ids=ids, attention_mask=attn,
                   image_embeds=engine.encode(frames),
                   image_embeds_position_mask=img_mask,
                   position_ids=position_ids(
                       attn, text.model.embed_positions.padding_idx),
                   use_cache=False, logits_to_keep=1)
    return out.logits[:, -1].float().cpu()


def logit_agreement(logits, reference):
    """Largest relative logit error and share of equal argmaxes."""
    error = ((logits - reference).norm(dim=-1) /
             reference.norm(dim=-1).clamp(min=1e-12)).max().item()
    same = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
    return error, same


def measure(folder, device, dtype, quantization, new_tokens, bandwidth,
            reference=None, compiled=True, reference_logits=None):
    """Load one variant, measure it, free it; return the row (a dict)."""
    import torch
    from ..model.decoding import greedy_generate
    from ..model.loading import ModelOptions, precision_conflict
    from ..model.slot import EngineSlot
    from ..model.static_decode import StaticDecoder
    from .timing import caption_split
    row = {'dtype': dtype, 'quantization': quantization}
    slot = EngineSlot()
    before = torch.cuda.memory_allocated(device) \
        if device.startswith('cuda') else 0
    start = time.perf_counter()
    engine = slot.load(ModelOptions(model=folder, device=device, dtype=dtype,
                                    quantization=quantization,
                                    local_files_only=True), 0)
    row['load_s'] = time.perf_counter() - start
    row['memory_gb'] = (memory_bytes(engine, device) - before) / 1e9
    frames = [np.random.default_rng(k).integers(0, 256, (480, 640, 3),
                                                dtype=np.uint8)
              for k in range(max(4, AGREEMENT_FRAMES))]
    logits = next_token_logits(engine, frames[:AGREEMENT_FRAMES])
    row['logits'] = logits
    if reference_logits is not None:
        row['logit_error'], row['first_token_agreement'] = logit_agreement(
            logits, reference_logits)
    start = time.perf_counter()
    engine.caption(frames[:1], DEFAULT_PROMPT, new_tokens)
    _sync(device)
    row['caption_ms'] = (time.perf_counter() - start) * 1000
    embeds = engine.encode(frames[:1])
    prompts = [engine.prompt(DEFAULT_PROMPT)]

    def eager(n):
        out = greedy_generate(engine.model, embeds, prompts, n, -1,
                              engine.pad_id)[0]
        _sync(device)
        return out
    start = time.perf_counter()
    eager(new_tokens)
    # Best of 5 where a run is short (noise), of 2 where it takes seconds.
    repeats = 5 if time.perf_counter() - start < 2.0 else 2
    row['eager_ms_per_token'], _, out = timed_per_token(
        eager, new_tokens, repeats, warm_many=False)
    tokens = out.token_ids
    row['finite'] = bool(np.isfinite(out.probs).all() and
                         all(0 < p <= 1 for p in out.probs))
    row['tokens'] = tokens
    row['limit_ms_per_token'] = text_weight_bytes(
        engine.model.text_model) / (bandwidth * 1e9) * 1000
    if reference is not None:
        row['agreement'] = agreement(tokens, reference)
    why = precision_conflict(dtype, quantization, True)
    fastest = None  # the decoder of the caption split: compiled if faster
    if why or not compiled:
        row['compiled'] = why or 'skipped (time budget)'
    else:
        decoder = StaticDecoder(engine.model, compile=True)
        width = len(prompts[0].input_ids)
        row['compile_s'] = decoder.warmup((1,), (width + new_tokens - 1,))

        def fast(n):
            out = decoder.generate(embeds, prompts, n, -1, engine.pad_id)[0]
            _sync(device)
            return out
        row['compiled_ms_per_token'], _, out = timed_per_token(
            fast, new_tokens, repeats)
        row['compiled_same_tokens'] = out.token_ids == tokens
        # Where they part (random weights: near-flat logits, a tie flips).
        row['compiled_first_difference'] = next(
            (i for i, (a, b) in enumerate(zip(out.token_ids, tokens))
             if a != b), None if len(out.token_ids) == len(tokens)
            else min(len(out.token_ids), len(tokens)))
        if row['compiled_ms_per_token'] < row['eager_ms_per_token']:
            fastest = decoder.generate
        decoder = None
    row['split'] = caption_split(engine, frames[0], DEFAULT_PROMPT,
                                 new_tokens, fastest)
    row['split']['compiled'] = fastest is not None
    fastest = None
    start = time.perf_counter()
    engine.caption(frames, DEFAULT_PROMPT, new_tokens)
    _sync(device)
    row['batch4_frames_per_s'] = 4 / (time.perf_counter() - start)
    probe = weakref.ref(next(engine.model.parameters()))
    engine = embeds = out = None  # the closures' cells too
    row['freed'] = slot.free() and probe() is None
    if device.startswith('cuda'):
        row['memory_after_free_gb'] = (
            torch.cuda.memory_allocated(device) - before) / 1e9
    return row


def verdict(row, random_weights=False):
    """
    OK, or WARN/FAIL with the reasons.

    Agreement with fp32 is judged on a real model only: random weights give
    near-flat logits, where any rounding changes the argmax.
    """
    if 'error' in row:
        return 'FAIL: %s' % row['error']
    if 'skipped' in row:
        return 'SKIP: %s' % row['skipped']
    why = []
    if not row['finite']:
        why.append('NaN/inf or a probability outside (0, 1]')
    if not random_weights and row['quantization'] == 'none' and \
            row.get('agreement', 1) < AGREEMENT:
        why.append('repeats %.0f%% of fp32 tokens' % (100 * row['agreement']))
    if row['dtype'] == 'fp32' and row.get('compiled_same_tokens') is False:
        # (fp16/bf16 compiled kernels round apart from eager: near-ties flip)
        why.append('compiled tokens differ from eager')
    if 'compiled_ms_per_token' in row and \
            row['compiled_ms_per_token'] > row['eager_ms_per_token'] * 1.1:
        why.append('compiled slower than eager')
    ratio = best_vs_limit(row)
    # (Under a millisecond of weights, as on the tiny checkpoints, the host
    # sets the pace and the ratio says nothing about the kernels.)
    if ratio is not None and ratio > FAR_FROM_LIMIT and \
            row['limit_ms_per_token'] >= 1.0:
        why.append('decodes at %.1fx its read limit' % ratio)
    if not row['freed'] or row.get('memory_after_free_gb', 0) > 0.05:
        why.append('memory not freed after deactivate')
    return 'WARN: ' + '; '.join(why) if why else 'OK'


def best_vs_limit(row):
    """Best ms/token (compiled or eager) over the read limit, or None."""
    best = min([row[key] for key in ('compiled_ms_per_token',
                                     'eager_ms_per_token') if row.get(key)],
               default=None)
    if not best or not row.get('limit_ms_per_token'):
        return None
    return best / row['limit_ms_per_token']


def recommend(rows, random_weights=False):
    """
    Pick the row with the fastest caption of those that meet the agreement.

    Agreement: next-token logits within LOGIT_ERROR_BOUND of fp32's (fp32
    itself meets it), and with a real model also AGREEMENT of fp32's tokens
    for an unquantized row (as ``verdict``). Returns (row, why) - row None
    when none qualifies.
    """
    fit = []
    for row in rows:
        if 'split' not in row or row['verdict'].startswith(('FAIL', 'SKIP')):
            continue
        if row['dtype'] != 'fp32' or row['quantization'] != 'none':
            if row.get('logit_error', float('inf')) > LOGIT_ERROR_BOUND:
                continue
            if not random_weights and row.get('agreement', 0) < AGREEMENT:
                continue
        fit.append(row)
    if not fit:
        return None, 'no row met the agreement bound'
    best = min(fit, key=lambda row: row['split']['caption_ms'])
    return best, 'fastest caption of the %d rows within %.2f relative ' \
        'logit error of fp32' % (len(fit), LOGIT_ERROR_BOUND)


def split_table(rows):
    """Render each row's caption split as a Markdown table."""
    lines = ['| dtype | quantization | decoder | preprocess ms | vision ms | '
             'prefill ms | decode ms/token | parse ms | caption ms |',
             '|' + '---|' * 9]
    for row in rows:
        split = row.get('split')
        if split:
            lines.append('| %s | %s | %s | %.0f | %.0f | %.0f | %.1f | %.1f '
                         '| %.0f |' % (
                             row['dtype'], row['quantization'],
                             'compiled' if split['compiled'] else 'eager',
                             split['preprocess_ms'], split['vision_ms'],
                             split['prefill_ms'],
                             split['decode_ms_per_token'], split['parse_ms'],
                             split['caption_ms']))
    return '\n'.join(lines)


def table(rows):
    """Render the rows as a Markdown table."""
    def num(row, key, fmt):
        return fmt % row[key] if isinstance(row.get(key), (int, float)) \
            and not isinstance(row.get(key), bool) else '-'
    lines = ['| dtype | quantization | load s | memory GB | caption ms | '
             'eager ms/token | compiled ms/token | limit ms/token | '
             'best vs limit | logit error | agreement | batch-4 frames/s | '
             'freed | verdict |', '|' + '---|' * 14]
    for row in rows:
        ratio = best_vs_limit(row)
        ratio = '-' if ratio is None else '%.2fx' % ratio
        compiled = num(row, 'compiled_ms_per_token', '%.2f')
        if compiled == '-' and isinstance(row.get('compiled'), str):
            compiled = 'refused' if 'compile off' in row['compiled'] \
                else 'skipped'
        lines.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | '
                     '%s | %s | %s | %s |' % (
                         row['dtype'], row['quantization'],
                         num(row, 'load_s', '%.1f'),
                         num(row, 'memory_gb', '%.2f'),
                         num(row, 'caption_ms', '%.0f'),
                         num(row, 'eager_ms_per_token', '%.2f'), compiled,
                         num(row, 'limit_ms_per_token', '%.2f'), ratio,
                         num(row, 'logit_error', '%.3f'),
                         num(row, 'agreement', '%.2f'),
                         num(row, 'batch4_frames_per_s', '%.2f'),
                         {True: 'yes', False: 'NO'}.get(row.get('freed'),
                                                        '-'),
                         row['verdict']))
    return '\n'.join(lines)


def run(model=None, device='auto', tiny=False, new_tokens=16, budget_s=480.0,
        log=print):
    """Measure every row that fits the budget; return the report."""
    import torch
    from ..model.loading import resolve_device
    started = time.monotonic()
    given = model
    device = resolve_device(device)
    rows_wanted = CUDA_ROWS if device.startswith('cuda') else CPU_ROWS
    report = {'device': device_line(device), 'rows': [],
              'new_tokens': new_tokens}
    log('device: %s' % report['device'])
    with tempfile.TemporaryDirectory() as tmp:
        if model is None:
            log('writing a random %s checkpoint ...' % (
                'tiny' if tiny else 'full-size'))
            model = str(write_random_model(tmp, tiny))
        report['model'] = model
        report['read_bandwidth_gbs'] = read_bandwidth_gbs(device)
        log('read bandwidth %.1f GB/s' % report['read_bandwidth_gbs'])
        reference = reference_logits = None
        per_row = None  # seconds the first row took: the estimate
        for dtype, quantization in rows_wanted:
            elapsed = time.monotonic() - started
            row = {'dtype': dtype, 'quantization': quantization}
            if per_row is not None and elapsed + per_row > budget_s:
                row['skipped'] = 'time budget (%.0f s used of %.0f)' % (
                    elapsed, budget_s)
            else:
                log('measuring %s / %s ...' % (dtype, quantization))
                try:
                    row = measure(model, device, dtype, quantization,
                                  new_tokens, report['read_bandwidth_gbs'],
                                  reference, compiled=per_row is None or
                                  elapsed + 2 * per_row < budget_s,
                                  reference_logits=reference_logits)
                except Exception as error:  # the row says it; go on
                    row['error'] = '%s: %s' % (type(error).__name__,
                                               str(error).splitlines()[0]
                                               if str(error) else '')
                    if device.startswith('cuda'):
                        torch.cuda.empty_cache()
                if per_row is None:
                    per_row = time.monotonic() - started - elapsed
                if reference is None and dtype == 'fp32' and 'tokens' in row:
                    reference = row['tokens']
                    reference_logits = row['logits']
            row['verdict'] = verdict(row, random_weights=given is None)
            row.pop('tokens', None)
            row.pop('logits', None)
            report['rows'].append(row)
    best, why = recommend(report['rows'], random_weights=given is None)
    report['recommended'] = None if best is None else {
        'dtype': best['dtype'], 'quantization': best['quantization'],
        'compile': best['split']['compiled'],
        'caption_ms': best['split']['caption_ms'], 'why': why}
    report['recommended_why'] = why
    report['seconds'] = time.monotonic() - started
    return report


def recommendation_line(report):
    """Say which settings to use on this device, and why: the verdict."""
    best = report.get('recommended')
    if best is None:
        return 'recommended: none (%s)' % report['recommended_why']
    return ('recommended on this device: dtype:=%s quantization:=%s '
            'compile:=%s - a caption of %d new tokens in %.0f ms (%s)' % (
                best['dtype'], best['quantization'],
                'true' if best['compile'] else 'false',
                report['new_tokens'], best['caption_ms'], best['why']))


def main(args):
    """Run the doctor (the CLI's arguments); print the table; exit code."""
    def log(text):
        print('[doctor] ' + text, flush=True)
    report = run(args.model, args.device, args.tiny, args.new_tokens,
                 args.budget_s, log=log)
    print('\n%s\nmodel: %s; read bandwidth %.1f GB/s; %d new tokens; %.0f s'
          % (report['device'], 'random weights (%s)' % (
              'tiny' if args.tiny else 'full size') if args.model is None
              else args.model, report['read_bandwidth_gbs'], args.new_tokens,
              report['seconds']))
    print(table(report['rows']))
    print("\nWhere a caption's time goes (%d new tokens):\n%s" % (
        args.new_tokens, split_table(report['rows'])))
    print(recommendation_line(report))
    if args.model is None:
        print('random weights: timings and memory are real; agreement with '
              'fp32 is numeric drift only (not judged); give --model for '
              'a quality figure')
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(report, out, indent=2)
    return 1 if any(r['verdict'].startswith('FAIL') for r in
                    report['rows']) else 0
