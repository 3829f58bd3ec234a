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
"""The captioning worker: one frame's failure costs that frame only."""

from concurrent.futures import CancelledError
import threading
import time

from conftest import BOX_PROMPT, make_frame
from kosmos_ros.model.preprocess import ImageError
from kosmos_ros.pipeline.worker import CaptionWorker
import numpy as np
import pytest


class Recorder:
    """Collects what the worker publishes and logs."""

    def __init__(self):
        self.published = []
        self.logs = []

    def publish(self, frame, image, bgr, out):
        self.published.append((frame.camera, frame.data, out))

    def log(self, level, text):
        self.logs.append((level, text))


def convert(data):
    """Queued items: an array, or an exception to raise (a hostile frame)."""
    if isinstance(data, BaseException):
        raise data
    return data, False


def make_worker(engine, rec, cameras=('a', 'b'), **kwargs):
    options = {'prompt': BOX_PROMPT, 'max_new_tokens': 4,
               'convert': convert, 'publish': rec.publish, 'log': rec.log}
    options.update(kwargs)
    worker = CaptionWorker(engine, list(cameras), **options)
    worker.scheduler.reopen()  # driven step by step, no thread
    return worker


@pytest.mark.parametrize('error', [
    RuntimeError('cv2.error: imdecode: image too large'),  # not ImageError
    ImageError('unsupported encoding'),
    MemoryError('cannot allocate'),
])
def test_any_conversion_error_costs_that_frame_only(engine, error):
    rec = Recorder()
    worker = make_worker(engine, rec)
    worker.scheduler.put('a', error)
    assert worker.step(timeout=1.0)
    health = worker.health['a']
    assert health.malformed + health.failed == 1
    assert (health.malformed == 1) == isinstance(error, ImageError)
    assert str(error) in health.last_error
    assert not rec.published
    worker.scheduler.put('a', make_frame(60, 80))
    assert worker.step(timeout=1.0)
    assert [cam for cam, _, _ in rec.published] == ['a']
    assert health.captioned.total == 1


def test_a_bad_frame_in_a_batch_does_not_take_the_others_with_it(engine):
    rec = Recorder()
    worker = make_worker(engine, rec, max_batch=2)
    # Passes conversion, fails preprocessing (two channels).
    worker.scheduler.put('a', np.zeros((60, 80, 2), np.uint8))
    worker.scheduler.put('b', make_frame(60, 80))
    assert worker.step(timeout=1.0)
    assert [cam for cam, _, _ in rec.published] == ['b']
    assert worker.health['a'].malformed == 1
    assert worker.health['b'].malformed == worker.health['b'].failed == 0


def test_publishing_errors_are_counted_and_the_next_frame_goes_out(engine):
    rec = Recorder()
    calls = []

    def publish(frame, image, bgr, out):
        calls.append(frame.data)
        if len(calls) == 1:
            raise ValueError('publisher destroyed')
        rec.publish(frame, image, bgr, out)
    worker = make_worker(engine, rec, publish=publish)
    for _ in range(2):
        worker.scheduler.put('a', make_frame(60, 80))
        worker.step(timeout=1.0)
    assert worker.health['a'].failed == 1
    assert 'publishing failed' in worker.health['a'].last_error
    assert len(rec.published) == 1


def test_warnings_are_throttled_per_camera_and_stage(engine):
    rec = Recorder()
    worker = make_worker(engine, rec)
    for _ in range(20):
        worker.scheduler.put('a', ImageError('bad'))
        worker.step(timeout=1.0)
    assert worker.health['a'].malformed == 20
    assert len([1 for level, _ in rec.logs if level == 'warn']) == 1
    assert '20' not in rec.logs[0][1]  # the first one, counts so far: 1


class Boom(BaseException):
    """What no per-frame handler catches: the thread itself dies."""


def test_a_dead_worker_is_reported_and_restarted(engine):
    rec = Recorder()
    worker = make_worker(engine, rec)
    worker.scheduler.close()
    real = worker.scheduler.next_work
    fired = []

    def next_work(*args, **kwargs):
        if not fired:
            fired.append(1)
            raise Boom('killed')
        return real(*args, **kwargs)
    worker.scheduler.next_work = next_work
    worker.start()
    deadline = time.monotonic() + 5
    while worker.state != 'dead' and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.state == 'dead'
    assert 'Boom: killed' in worker.model.last_crash
    assert worker.supervise() == 'Boom: killed'
    assert worker.state == 'running' and worker.model.restarts == 1
    assert rec.logs[-1][0] == 'fatal'
    worker.scheduler.put('a', make_frame(60, 80))
    deadline = time.monotonic() + 10
    while not rec.published and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec.published, 'the restarted worker captions again'
    assert worker.stop()
    assert worker.supervise() is None  # stopped on purpose: no restart


def test_stop_ends_a_long_generation_within_a_step_and_cancels_jobs(engine):
    rec = Recorder()
    worker = make_worker(engine, rec, max_new_tokens=512)
    worker.scheduler.close()
    started = threading.Event()
    steps = []
    caption = engine.caption

    def counting_caption(*args, should_stop, **kwargs):
        def counted():
            steps.append(should_stop())
            started.set()
            return steps[-1]
        return caption(*args, should_stop=counted, **kwargs)
    worker.engine = type('E', (), {
        'encode': engine.encode, 'caption': staticmethod(counting_caption)})()
    worker.start()
    worker.scheduler.put('a', make_frame(60, 80))
    assert started.wait(10)
    job = worker.scheduler.submit(lambda: 'never run')
    assert worker.stop(timeout=5.0)
    assert not rec.published, 'a stopped generation publishes nothing'
    assert steps[-1] is True and len(steps) < 512, 'ended at the stop'
    with pytest.raises(CancelledError):
        job.result(timeout=1)
    assert worker.state == 'stopped'
    with pytest.raises(CancelledError):
        worker.scheduler.submit(lambda: 1).result(timeout=1)


def test_queries_of_every_frame_in_one_batch_beside_the_captions(engine):
    rec = Recorder()
    queries = ('a red cup', 'the door', 'a dog')
    worker = make_worker(engine, rec, max_batch=2, queries=queries)
    calls = []
    ground = engine.ground

    def counted(embeds, sizes, phrases, **kwargs):
        calls.append((len(sizes), tuple(phrases)))
        return ground(embeds, sizes, phrases, **kwargs)
    engine.ground = counted
    try:
        frames = {'a': make_frame(60, 80, seed=1),
                  'b': make_frame(90, 120, seed=2)}
        for camera, frame in frames.items():
            worker.scheduler.put(camera, frame)
        assert worker.step(timeout=1.0)
    finally:
        del engine.ground
    assert calls == [(2, queries)], 'one batch: 2 frames x 3 queries'
    assert sorted(cam for cam, _, _ in rec.published) == ['a', 'b']
    for camera, frame, out in rec.published:
        assert out.caption is not None
        assert [q for q, _ in out.queries] == list(queries)
        alone = engine.locate_many(frame, list(queries))
        assert [r.raw for _, r in out.queries] == [r.raw for r in alone]


@pytest.mark.parametrize('mode, queries, caption, grounded', [
    ('captions', ('a cup',), True, False),
    ('queries', ('a cup',), False, True),
    ('both', (), True, False),
])
def test_mode_chooses_captions_queries_or_both(engine, mode, queries,
                                               caption, grounded):
    rec = Recorder()
    worker = make_worker(engine, rec, mode=mode, queries=queries)
    worker.scheduler.put('a', make_frame(60, 80))
    assert worker.step(timeout=1.0)
    (_, _, out), = rec.published
    assert (out.caption is not None) == caption
    assert bool(out.queries) == grounded


def test_queries_mode_without_queries_skips_the_model(engine):
    rec = Recorder()
    worker = make_worker(engine, rec, mode='queries')
    worker.scheduler.put('a', make_frame(60, 80))
    assert worker.step(timeout=1.0)
    assert not rec.published and len(worker.model.latency) == 0
    worker.queries = ('a cup',)  # set at runtime: the next frame uses it
    worker.scheduler.put('a', make_frame(60, 80))
    assert worker.step(timeout=1.0)
    (_, _, out), = rec.published
    assert [q for q, _ in out.queries] == ['a cup']


def test_compiled_decoding_is_warmed_on_the_worker_thread(tiny_model_dir):
    torch = pytest.importorskip('torch')
    from kosmos_ros.model.engine import KosmosEngine
    from kosmos_ros.model.loading import ModelOptions
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # compiled kernels bake in the thread count
    try:
        engine = KosmosEngine.load(ModelOptions(model=str(tiny_model_dir),
                                                device='cpu'),
                                   compile='on', warm=False)
        rec = Recorder()
        worker = make_worker(engine, rec)
        worker.scheduler.close()
        warmed_on = []

        def prepare(on_cold_shape):
            warmed_on.append(threading.current_thread().name)
            engine.prepare((8,), BOX_PROMPT, on_cold_shape=on_cold_shape)
        worker.serve(engine, prepare)  # returns once warmed
        assert warmed_on == ['kosmos-worker']

        def caption(tokens):
            return lambda: engine.caption([make_frame(60, 80)], BOX_PROMPT,
                                          tokens)
        worker.submit(caption(8)).result(timeout=60)
        assert worker.model.cold_compiles == 0, 'warm where it generates'
        # A request past the warmed lengths compiles while serving: said.
        worker.submit(caption(300)).result(timeout=300)
        assert worker.model.cold_compiles == 1
        assert worker.model.last_cold_compile[:2] == (1, 512)
        assert any('while serving' in text for _, text in rec.logs)
        # Generating on a thread that never warmed up is cold too (on CUDA
        # it would record its graphs anew): the worker's own is the one.
        caption(8)()
        assert worker.model.cold_compiles == 2
        assert worker.stop()
    finally:
        torch.set_num_threads(threads)
