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
``kosmos-ros``: the kosmos_ros pipeline on image files, no ROS needed.

::

    kosmos-ros caption IMAGE... [--model ID|DIR] [--prompt P] [--json]
                               [--annotate OUT_DIR]
    kosmos-ros ask IMAGE [--box X1 Y1 X2 Y2] [--history Q A]... "QUESTION"
    kosmos-ros locate IMAGE "PHRASE" ["PHRASE" ...]
    kosmos-ros bench [--model ID|DIR] [--json FILE]
    kosmos-ros doctor [--model DIR] [--tiny] [--json FILE]
    kosmos-ros make-tiny-model DIR

Results go to stdout (text, or JSON with --json); progress and errors go to
stderr so that JSON stays parseable. Exit status: 0 ok, 1 some image failed,
2 bad usage or the model could not be loaded.
"""

import argparse
import json
import os
from pathlib import Path
import signal
import sys

from ..model.defaults import MAX_NEW_TOKENS_LIMIT
from ..model.loading import ATTENTION, DEFAULT_MODEL, DTYPES, ModelOptions, \
    QUANTIZATIONS


def _progress(message):
    print('[kosmos-ros] %s' % message, file=sys.stderr, flush=True)


def _add_model_args(parser):
    parser.add_argument('--model', default=DEFAULT_MODEL,
                        help='hub id or local checkpoint folder '
                             '(default: %(default)s)')
    parser.add_argument('--device', default='auto',
                        help='auto, cpu, cuda or cuda:N (default: auto)')
    parser.add_argument('--dtype', default='auto', choices=DTYPES)
    parser.add_argument('--quantization', default='none',
                        choices=QUANTIZATIONS)
    parser.add_argument('--attn-implementation', default='auto',
                        choices=ATTENTION)
    parser.add_argument('--max-new-tokens', type=int, default=64,
                        help='1..%d (default: %%(default)s)'
                        % MAX_NEW_TOKENS_LIMIT)
    parser.add_argument('--max-pixels', type=int, default=50_000_000,
                        help='refuse larger images (default: %(default)s)')
    parser.add_argument('--allow-unsafe-pickle', action='store_true',
                        help='UNSAFE: also load pickle weights '
                        '(pytorch_model.bin), which can run code; only for '
                        'checkpoints you trust')
    parser.add_argument('--compile', default='off', choices=('off', 'on'),
                        help='decode with the static-cache torch.compile '
                        'step, compiled on first use (default: off)')


def _load_engine(args):
    from ..model.engine import KosmosEngine
    from ..model.loading import ModelLoadError
    options = ModelOptions(
        model=args.model, device=args.device, dtype=args.dtype,
        quantization=args.quantization,
        attn_implementation=args.attn_implementation,
        local_files_only=os.environ.get('HF_HUB_OFFLINE', '0') != '0',
        allow_unsafe_pickle=args.allow_unsafe_pickle)
    try:
        # A one-shot command compiles the decode step for the batch sizes
        # it meets, on first use, not every size a node warms up front
        # (4 compilations: ~1 minute for a tiny model in int8wo).
        engine = KosmosEngine.load(options, max_pixels=args.max_pixels,
                                   log=_progress, compile=args.compile,
                                   warm=False)
        if args.compile == 'on':
            engine.decoder.on_cold_shape = lambda batch, slots, seconds: \
                _progress('decode step compiled for batch %d (%d slots) '
                          'in %.1f s' % (batch, slots, seconds))
        return engine
    except (ModelLoadError, ValueError) as error:
        _progress('error: %s' % error)
        return None


def _read_rgb(path, max_pixels):
    """
    Read an image file as RGB uint8; raise ValueError if unusable.

    The size a PNG or JPEG header claims is checked before decoding, so a
    small file claiming 100000x100000 pixels costs nothing.
    """
    import cv2
    import numpy as np
    from ..model.image_size import check_encoded
    try:
        with open(path, 'rb') as stream:
            data = stream.read(max_pixels * 3 + 1)
    except OSError as error:
        raise ValueError('cannot read image %s: %s' % (path, error.strerror))
    check_encoded(data, max_pixels, 'image %s' % path)  # (--max-pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:
        raise ValueError('cannot decode image %s: %s' % (
            path, str(error).strip().splitlines()[-1]))
    if image is None:
        raise ValueError('cannot read image %s (missing, or not an image '
                         'OpenCV can decode)' % path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _print_text(path, result):
    print('%s: %s' % (path, result.text))
    for box in result.boxes():
        print('  %-30s [%7.1f %7.1f %7.1f %7.1f] score %.3f' % (
            box.phrase or '(no phrase)', box.x1, box.y1, box.x2, box.y2,
            box.score))


def cmd_caption(args):
    """Caption image files; print results; write annotated copies."""
    engine = _load_engine(args)
    if engine is None:
        return 2
    if args.annotate:
        Path(args.annotate).mkdir(parents=True, exist_ok=True)
    failed, records = 0, []
    paths = list(args.images)
    for first in range(0, len(paths), args.batch_size):
        batch, frames = [], []
        for path in paths[first:first + args.batch_size]:
            try:
                frames.append(_read_rgb(path, args.max_pixels))
                batch.append(path)
            except ValueError as error:
                _progress('error: %s' % error)
                failed += 1
        if not frames:
            continue
        try:
            results = engine.caption(frames, prompt=args.prompt,
                                     max_new_tokens=args.max_new_tokens)
        except ValueError as error:
            _progress('error: %s' % error)
            failed += len(frames)
            continue
        for path, frame, result in zip(batch, frames, results):
            if args.json:
                records.append(dict(image=str(path), **result.to_dict()))
            else:
                _print_text(path, result)
            if args.annotate:
                _write_annotated(args.annotate, path, frame, result)
        if len(paths) > 1:
            done = min(first + args.batch_size, len(paths))
            _progress('%d/%d images' % (done, len(paths)))
    if args.json:
        json.dump(records, sys.stdout, indent=2)
        print()
    return 1 if failed else 0


def _write_annotated(out_dir, path, frame, result):
    import cv2
    from ..pipeline.annotate import annotate
    target = Path(out_dir) / (Path(path).stem + '_kosmos.png')
    cv2.imwrite(str(target), annotate(frame, result)[:, :, ::-1])
    _progress('wrote %s' % target)


def _single(args, run, text_key):
    """Load the model, read one image, run ``run(engine, frame)``, print."""
    from ..model.preprocess import ImageError
    from ..model.questions import RequestError
    try:
        frame = _read_rgb(args.image, args.max_pixels)
    except ValueError as error:
        _progress('error: %s' % error)
        return 1
    engine = _load_engine(args)
    if engine is None:
        return 2
    try:
        results = run(engine, frame)
    except (RequestError, ImageError) as error:
        _progress('error: %s' % error)
        return 1
    results = results if isinstance(results, list) else [results]
    records = []
    for result in results:
        if args.json:
            record = dict(image=str(args.image), **result.to_dict())
            record[text_key] = record.pop('caption')
            records.append(record)
        else:
            _print_text(args.image, result)
    if args.json:  # one result: one object, as before; several: a list
        json.dump(records if len(records) > 1 else records[0], sys.stdout,
                  indent=2)
        print()
    if args.annotate:
        Path(args.annotate).mkdir(parents=True, exist_ok=True)
        merged = results[0]
        merged.entities = [e for r in results for e in r.entities]
        _write_annotated(args.annotate, args.image, frame, merged)
    return 0


def cmd_ask(args):
    """Answer a question about a region (or the whole) of an image."""
    history = [tuple(turn) for turn in args.history or []]
    return _single(args, lambda engine, frame: engine.ask(
        frame, args.question, tuple(args.box), history,
        max_new_tokens=args.max_new_tokens), 'answer')


def cmd_locate(args):
    """Find the boxes of one or several phrases in an image (one batch)."""
    return _single(args, lambda engine, frame: engine.locate_many(
        frame, args.phrases), 'phrase')


def _add_output_args(parser):
    parser.add_argument('--json', action='store_true',
                        help='print JSON: text and per box phrase, '
                             '[x1, y1, x2, y2] in pixels and score')
    parser.add_argument('--annotate', metavar='OUT_DIR',
                        help='write annotated images to this folder')


def cmd_bench(args):
    """Benchmark against the notebook recipe, side by side."""
    if args.decode:  # its own checkpoints: tiny, deep-narrow, full size
        from . import bench_decode
        bench_decode.main((['--full-size'] if args.full_size else []) +
                          (['--json', args.json] if args.json else []))
        return 0
    if args.model is not None:
        return _bench_model(args)
    import tempfile
    from ..model.tiny import make_tiny_model
    with tempfile.TemporaryDirectory() as tmp:
        args.model = str(make_tiny_model(os.path.join(tmp, 'tiny')))
        _progress('no --model: benchmarking a tiny random checkpoint')
        return _bench_model(args)


def _bench_model(args):
    from . import bench
    engine = _load_engine(args)
    if engine is None:
        return 2
    return bench.main(engine, args)


def cmd_doctor(args):
    """Every dtype and quantization on this device, in one table."""
    from . import doctor
    if not 2 <= args.new_tokens <= 128:
        _progress('--new-tokens must be in 2..128, got %d' % args.new_tokens)
        return 2
    return doctor.main(args)


def cmd_make_tiny_model(args):
    """Write the tiny random checkpoint."""
    from ..model.tiny import make_tiny_model
    out = make_tiny_model(args.dir, seed=args.seed)
    _progress('wrote a tiny RANDOM Kosmos-2 checkpoint to %s (for plumbing '
              'tests: its captions are noise)' % out)
    return 0


def build_parser():
    """Return the argument parser for all subcommands."""
    from ..model.defaults import DEFAULT_PROMPT
    parser = argparse.ArgumentParser(
        prog='kosmos-ros', description='Kosmos-2 grounded perception on '
        'image files (the same core as the ROS 2 node).')
    sub = parser.add_subparsers(dest='command', required=True)

    cap = sub.add_parser('caption', help='grounded captions of images')
    cap.add_argument('images', nargs='+', metavar='IMAGE')
    _add_model_args(cap)
    cap.add_argument('--prompt', default=DEFAULT_PROMPT)
    cap.add_argument('--batch-size', type=int, default=4)
    _add_output_args(cap)
    cap.set_defaults(func=cmd_caption)

    ask = sub.add_parser('ask', help='grounded question about an image '
                         'region')
    ask.add_argument('image', metavar='IMAGE')
    ask.add_argument('question')
    ask.add_argument('--box', nargs=4, type=float, default=[0, 0, 0, 0],
                     metavar=('X1', 'Y1', 'X2', 'Y2'),
                     help='region in pixels (default: the whole image)')
    ask.add_argument('--history', nargs=2, action='append',
                     metavar=('QUESTION', 'ANSWER'),
                     help='an earlier turn, oldest first (repeatable)')
    _add_model_args(ask)
    ask.set_defaults(func=cmd_ask, max_new_tokens=32)
    _add_output_args(ask)

    loc = sub.add_parser('locate', help='boxes of phrases in an image, all '
                         'phrases in one batch')
    loc.add_argument('image', metavar='IMAGE')
    loc.add_argument('phrases', nargs='+', metavar='PHRASE')
    _add_model_args(loc)
    _add_output_args(loc)
    loc.set_defaults(func=cmd_locate)

    ben = sub.add_parser('bench', help='speed against the Kosmos-2 '
                         'notebook recipe, side by side')
    _add_model_args(ben)
    ben.set_defaults(func=cmd_bench, model=None)
    ben.add_argument('--json', metavar='FILE', help='also write JSON here')
    ben.add_argument('--repeats', type=int, default=20)
    ben.add_argument('--flood-seconds', type=float, default=10.0)
    ben.add_argument('--decode', action='store_true',
                     help='instead: ms per token of HF generate, our eager '
                     'loop and the compiled static-cache step, on tiny and '
                     'deep-narrow random checkpoints')
    ben.add_argument('--full-size', action='store_true',
                     help='with --decode: random weights at the real size '
                     '(~7 GB of RAM) against the memory-bandwidth limit')

    doc = sub.add_parser('doctor', help='measure this machine: every dtype '
                         'and quantization, eager vs compiled, against the '
                         'memory-bandwidth limit (random weights at the '
                         'real size unless --model)')
    doc.add_argument('--model', default=None,
                     help='a local checkpoint folder (default: random '
                     'weights, no hub)')
    doc.add_argument('--device', default='auto',
                     help='auto, cpu, cuda or cuda:N (default: auto)')
    doc.add_argument('--tiny', action='store_true',
                     help='random weights of a tiny checkpoint (a smoke '
                     'test of the command itself)')
    doc.add_argument('--new-tokens', type=int, default=16)
    doc.add_argument('--budget-s', type=float, default=480.0,
                     help='rows that would not fit are skipped (default: '
                     '%(default)s s)')
    doc.add_argument('--json', metavar='FILE', help='also write JSON here')
    doc.set_defaults(func=cmd_doctor)

    tiny = sub.add_parser('make-tiny-model',
                          help='write a tiny random checkpoint for tests')
    tiny.add_argument('dir')
    tiny.add_argument('--seed', type=int, default=0)
    tiny.set_defaults(func=cmd_make_tiny_model)
    return parser


def _usage_error(args):
    """Say what is wrong with the arguments, before anything loads."""
    from ..model.questions import check_phrases, check_question, RequestError
    if getattr(args, 'batch_size', 1) < 1:
        return '--batch-size must be >= 1'
    if hasattr(args, 'max_new_tokens') and \
            not 1 <= args.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        return '--max-new-tokens must be in 1..%d, got %d' % (
            MAX_NEW_TOKENS_LIMIT, args.max_new_tokens)
    if getattr(args, 'max_pixels', 1) < 1:
        return '--max-pixels must be >= 1'
    for option, path in (('--annotate', getattr(args, 'annotate', None)),
                         ('make-tiny-model DIR', getattr(args, 'dir', None))):
        if path and os.path.exists(path) and not os.path.isdir(path):
            return '%s: %s exists and is not a folder' % (option, path)
    try:
        if args.command == 'ask':
            check_question(args.question, args.history or [])
        elif args.command == 'locate':
            check_phrases(args.phrases)
    except RequestError as error:
        return str(error)
    return None


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    """Entry point of ``kosmos-ros``."""
    if argv is None:  # the command, not a caller's process: SIGTERM
        # (systemd, timeout, a CI job) unwinds like Ctrl-C, so doctor's and
        # bench's temporary checkpoints (3 GB at full size) are removed.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = build_parser().parse_args(argv)
    error = _usage_error(args)
    if error:
        _progress('error: %s' % error)
        return 2
    return args.func(args)
