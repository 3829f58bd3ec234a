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
``kosmos-ros bench``: kosmos_ros against the Kosmos-2 notebook recipe, in one run.

Side by side, on the same frames, in one process:

1. preprocessing a 1920x1080 frame: PIL image -> HF processor (the recipe)
   against ours, p50 ms, ratio, pixel differences and whether the generated
   tokens change on the loaded model;
2. host overhead per frame: everything but the model's forward passes;
3. generation for 4 frames, one at a time against batched, and whether the
   batched tokens equal the sequential ones;
4. standing queries: 1, 4 and 16 phrases on one frame, grounded in one
   batch against one Locate call each (sharing the frame's encoding, so
   only batching differs), and whether the boxes are identical;
5. a flood: 4 cameras at 30 Hz through the node's captioning worker;
6. on CUDA only: latency per token and of a 32-token caption, against the
   recipe's ``generate`` and the memory-bandwidth limit.

Timings are medians over repeats; run it on an idle machine.
"""

import json
import os
import statistics
import time

import numpy as np

from ..model.decoding import encode_images, greedy_generate
from ..model.defaults import DEFAULT_PROMPT
from ..pipeline.worker import CaptionWorker


def synthetic_frame(height=1080, width=1920, seed=0):
    """Draw a camera-like frame: gradients, flat shapes and sensor noise."""
    import cv2
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 255, y / height * 255,
                    (x + y) / (width + height) * 255], -1)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(20, width // 4)),
                                      y0 + int(rng.integers(20, height // 4))),
                      rng.integers(0, 255, 3).tolist(), -1)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _p50_ms(fn, repeats):
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def bench_preprocess(engine, frames, repeats):
    """Time the reference PIL + HF processor against ours at 1920x1080."""
    from PIL import Image
    import torch
    processor = engine.processor
    frame = frames[0]

    def reference():
        return processor(text=DEFAULT_PROMPT, images=Image.fromarray(frame),
                         return_tensors='pt')

    def ours():
        return engine.preprocess([frame]), engine.prompt(DEFAULT_PROMPT)
    ref_ms, our_ms = _p50_ms(reference, repeats), _p50_ms(ours, repeats)
    diffs, same = [], 0
    for f in frames:
        ref = processor.image_processor(Image.fromarray(f),
                                        return_tensors='np')['pixel_values']
        mine = engine.preprocess([f]).numpy()
        diffs.append(np.abs(ref - mine))
        outs = []
        for pixels in (ref, mine):
            tensor = torch.from_numpy(pixels).to(engine.device, engine.dtype)
            (out,) = greedy_generate(
                engine.model, encode_images(engine.model, tensor),
                [engine.prompt(DEFAULT_PROMPT)], 32, engine.eos_id,
                engine.pad_id)
            outs.append(out.token_ids)
        same += outs[0] == outs[1]
    diff = np.concatenate([d.ravel() for d in diffs])
    return {
        'reference_p50_ms': ref_ms, 'ours_p50_ms': our_ms,
        'speedup': ref_ms / our_ms, 'max_abs_diff': float(diff.max()),
        'mean_abs_diff': float(diff.mean()),
        'grey_level': float(1 / 255 / min(processor.image_processor.image_std)),
        'identical_tokens': '%d/%d' % (same, len(frames)),
    }


class _ForwardTimer:
    """Accumulate wall time spent inside the model's top-level forwards."""

    def __init__(self, model):
        import torch
        self.total = 0.0
        self._sync = torch.cuda.synchronize if next(
            model.parameters()).is_cuda else (lambda: None)
        self._hooks = []
        for module in (model.vision_model, model.image_to_text_projection,
                       model.text_model):
            self._hooks.append(module.register_forward_pre_hook(self._pre))
            self._hooks.append(module.register_forward_hook(self._post))

    def _pre(self, *args):
        self._sync()
        self._start = time.perf_counter()

    def _post(self, *args):
        self._sync()
        self.total += time.perf_counter() - self._start

    def close(self):
        for hook in self._hooks:
            hook.remove()


def bench_host_overhead(engine, frames, repeats, max_new_tokens=32):
    """Time per frame outside model forwards: bgr8 bytes in, result out."""
    height, width = frames[0].shape[:2]
    data = [f[:, :, ::-1].tobytes() for f in frames]  # as a bgr8 Image msg
    overheads = []
    timer = _ForwardTimer(engine.model)
    try:
        for i in range(repeats + 1):
            buf = data[i % len(data)]
            timer.total = 0.0
            start = time.perf_counter()
            frame = np.frombuffer(buf, np.uint8).reshape(height, width, 3)
            engine.caption([frame], max_new_tokens=max_new_tokens, bgr=True)
            if i:  # the first run warms caches
                overheads.append(time.perf_counter() - start - timer.total)
    finally:
        timer.close()
    return {'p50_ms': statistics.median(overheads) * 1000.0,
            'max_new_tokens': max_new_tokens}


def bench_batching(engine, frames, repeats, max_new_tokens=32):
    """Time four frames one at a time against one batch; compare tokens."""
    prompts = [engine.prompt(p) for p in (
        DEFAULT_PROMPT, '<grounding>Describe this image in detail:',
        '<grounding> An image of', '<grounding><phrase> a box</phrase>')]
    frames = (frames * 4)[:4]

    def sequential():
        return [greedy_generate(engine.model, engine.encode([f]), [p],
                                max_new_tokens, engine.eos_id,
                                engine.pad_id)[0]
                for f, p in zip(frames, prompts)]

    def batched():
        return greedy_generate(engine.model, engine.encode(frames), prompts,
                               max_new_tokens, engine.eos_id, engine.pad_id)
    seq_ms, bat_ms = _p50_ms(sequential, repeats), _p50_ms(batched, repeats)
    same = all(a.token_ids == b.token_ids
               for a, b in zip(sequential(), batched()))
    return {'sequential_fps': 4000.0 / seq_ms, 'batched_fps': 4000.0 / bat_ms,
            'speedup': seq_ms / bat_ms, 'token_identical': same,
            'max_new_tokens': max_new_tokens}


QUERY_PHRASES = [
    'a red cup', 'the door handle', 'a person', 'a chair', 'the table',
    'a bottle', 'a laptop', 'the window', 'a dog', 'a cat', 'a backpack',
    'the floor', 'a box', 'a plant', 'the light switch', 'a keyboard']


def bench_queries(engine, frame, repeats, counts=(1, 4, 16)):
    """Ground N standing queries in one batch against one Locate each."""
    embeds = engine.encode([frame])
    out = {}
    for count in counts:
        phrases = QUERY_PHRASES[:count]

        def batched():
            return engine.locate_many(frame, phrases, image_embeds=embeds)

        def one_each():
            return [engine.locate(frame, p, image_embeds=embeds)
                    for p in phrases]
        bat_ms, seq_ms = _p50_ms(batched, repeats), _p50_ms(one_each, repeats)
        same = all(a.raw == b.raw and [x.xyxy() for x in a.boxes()] ==
                   [x.xyxy() for x in b.boxes()]
                   for a, b in zip(batched(), one_each()))
        out[str(count)] = {'batched_ms': bat_ms, 'one_each_ms': seq_ms,
                           'speedup': seq_ms / bat_ms, 'identical': same}
    first = out[str(counts[0])]['batched_ms']
    for row in out.values():
        row['cost_vs_one_query'] = row['batched_ms'] / first
    return out


def rss_mb():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def bench_flood(engine, frames, seconds=10.0, cameras=4, hz=30.0,
                max_batch=4, max_new_tokens=16):
    """Publish ``cameras`` at ``hz`` for ``seconds`` through the worker."""
    names = ['cam%d' % i for i in range(cameras)]
    worker = CaptionWorker(engine, names, prompt=DEFAULT_PROMPT,
                           max_new_tokens=max_new_tokens,
                           max_batch=max_batch)
    sched = worker.scheduler
    rss0 = rss_mb()
    worker.start()
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        tick = start + sent / hz
        delay = tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for i, name in enumerate(names):
            sched.put(name, frames[(sent + i) % len(frames)])
        sent += 1
    worker.stop(timeout=60.0)
    stats = sched.stats.values()
    health = worker.health.values()
    return {
        'seconds': seconds, 'cameras': cameras, 'hz': hz,
        'frames_in': sum(s.received for s in stats),
        'processed': sum(h.captioned.total for h in health),
        'dropped': sum(s.dropped for s in stats),
        'max_backlog': sched.max_backlog,
        'max_backlog_per_camera': sched.max_backlog / cameras,
        'oldest_age_ms': max(h.age_at_start.max() for h in health) * 1000.0,
        'rss_growth_mb': rss_mb() - rss0,
    }


def run_all(engine, repeats=20, flood_seconds=10.0):
    """Run every CPU section; return a JSON-ready dict."""
    frames = [synthetic_frame(seed=s) for s in range(4)]
    import torch
    report = {
        'machine': {'cpus': os.cpu_count(), 'torch': torch.__version__,
                    'device': engine.device,
                    'dtype': str(engine.dtype).replace('torch.', ''),
                    'model_parameters': sum(
                        p.numel() for p in engine.model.parameters())},
        'preprocess_1080p': bench_preprocess(engine, frames, repeats),
        'host_overhead_1080p': bench_host_overhead(engine, frames, repeats),
        'generation_4_frames': bench_batching(engine, frames,
                                              max(3, repeats // 4)),
        'queries_1_frame': bench_queries(engine, frames[0],
                                         max(3, repeats // 4)),
        'flood': bench_flood(engine, [f[:240, :320].copy() for f in frames],
                             seconds=flood_seconds),
    }
    if engine.device.startswith('cuda'):
        report['gpu'] = 'see kosmos-ros bench --gpu'
    else:
        report['gpu'] = 'not measured: no CUDA device'
    return report


def format_table(report):
    """Render the report as an aligned text table."""
    rows = []
    pre = report['preprocess_1080p']
    rows.append(('preprocess 1920x1080', 'reference %.2f ms | ours %.2f ms | '
                 '%.1fx' % (pre['reference_p50_ms'], pre['ours_p50_ms'],
                            pre['speedup'])))
    rows.append(('  pixel difference', 'max %.4f, mean %.5f (1 grey level = '
                 '%.4f); tokens identical %s' % (
                     pre['max_abs_diff'], pre['mean_abs_diff'],
                     pre['grey_level'], pre['identical_tokens'])))
    host = report['host_overhead_1080p']
    rows.append(('host overhead 1080p', 'p50 %.2f ms per frame (%d tokens)'
                 % (host['p50_ms'], host['max_new_tokens'])))
    gen = report['generation_4_frames']
    rows.append(('generation 4 frames', 'sequential %.1f fps | batched %.1f '
                 'fps | %.2fx | token-identical: %s' % (
                     gen['sequential_fps'], gen['batched_fps'],
                     gen['speedup'], gen['token_identical'])))
    for count, row in report['queries_1_frame'].items():
        rows.append(('%s queries, 1 frame' % count, 'one Locate each %.1f ms '
                     '| batched %.1f ms | %.2fx | %.2fx the cost of 1 query '
                     '| identical: %s' % (
                         row['one_each_ms'], row['batched_ms'],
                         row['speedup'], row['cost_vs_one_query'],
                         row['identical'])))
    fl = report['flood']
    rows.append(('flood %d cams x %g Hz, %g s' % (fl['cameras'], fl['hz'],
                                                  fl['seconds']),
                 'in %d, processed %d, dropped %d, max backlog %d (%.2f per '
                 'camera), oldest age %.0f ms, RSS growth %.1f MB' % (
                     fl['frames_in'], fl['processed'], fl['dropped'],
                     fl['max_backlog'], fl['max_backlog_per_camera'],
                     fl['oldest_age_ms'], fl['rss_growth_mb'])))
    rows.append(('GPU', str(report['gpu'])))
    width = max(len(name) for name, _ in rows)
    return '\n'.join('%-*s  %s' % (width, name, text) for name, text in rows)


def main(engine, args):
    """Run the benchmark for the CLI; print the table, write JSON."""
    report = run_all(engine, repeats=args.repeats,
                     flood_seconds=args.flood_seconds)
    print(format_table(report))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(report, out, indent=2)
    return 0
