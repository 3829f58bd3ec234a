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
The captioning worker: the one thread that runs the model (no ROS).

It takes work from the FrameScheduler - queued jobs (service calls) first,
then ready frames round-robin - converts each frame, captions a batch and
hands every result to ``publish``. Whatever one frame raises, at any stage
(conversion, preprocessing, generation, publishing), costs that frame only:
it is counted in its camera's health, logged (throttled) and the loop goes
on. A batch that fails is retried frame by frame, so one bad frame does not
take the other cameras' frames with it. If the thread dies anyway,
``supervise`` notices, reports it and starts a new one.

Per frame it makes what ``mode`` asks for: a grounded caption, the boxes of
each standing query, or both. Both share the frame's one vision encoding,
and all queries of all frames of a batch are grounded in one batch.

The node drives it with ROS messages; ``kosmos-ros bench`` drives the same
loop with arrays.
"""

from dataclasses import dataclass
import functools
import threading
import time

from .frames import FrameScheduler
from .health import CameraHealth, ModelHealth, Throttle
from ..model.preprocess import ImageError


@dataclass
class FrameResult:
    """What the worker made of one frame."""

    caption: object  # GroundedText, or None when captions are off
    queries: list  # (query, GroundedText) per standing query; [] when off
    embeds: object  # the frame's vision encoding (1, latent, dim)


def _as_frame(data):
    """Identity conversion for callers that queue HxWx3 RGB arrays."""
    return data, False


class CaptionWorker:
    """One model thread over a FrameScheduler; see the module docstring."""

    def __init__(self, engine, cameras, *, prompt, max_new_tokens,
                 max_batch=1, rate=0.0, queries=(), mode='both',
                 convert=_as_frame, publish=None, log=None,
                 clock=time.monotonic):
        """
        Make a stopped worker for ``cameras`` (names).

        ``convert(data) -> (HxWx3 uint8, is_bgr)`` turns a queued item into
        a frame; ``publish(frame, image, bgr, FrameResult)`` delivers a
        result; ``log(level, text)`` with level 'warn', 'error' or 'fatal'.
        ``update`` replaces the settings (``queries``: checked phrases) at
        any time; each batch uses the values it started with.
        """
        self.engine = engine
        self.max_batch = max_batch
        self.scheduler = FrameScheduler(cameras, rate, clock=clock)
        self.scheduler.close()  # opened by start()
        self.update(prompt=prompt, max_new_tokens=max_new_tokens, rate=rate,
                    queries=queries, mode=mode)
        self.health = {name: CameraHealth() for name in cameras}
        self.model = ModelHealth()
        self._convert = convert
        self._publish = publish or (lambda *args: None)
        self._log = log or (lambda level, text: None)
        self._clock = clock
        self._throttle = Throttle(5.0)
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()
        # Run on each new worker thread before any other work (the engine's
        # per-thread warm-up: CUDA graphs belong to the thread that records
        # them); its Future is what start() returns.
        self.prepare = None

    # -- what the owner hands in ----------------------------------------------
    def update(self, *, prompt, max_new_tokens, rate, queries, mode):
        """Take new runtime settings; the next batch uses them."""
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.scheduler.max_rate_hz = rate
        self.queries = tuple(queries)
        self.mode = mode

    def put(self, camera, data):
        """Offer ``camera``'s newest frame (replacing one not yet started)."""
        self.scheduler.put(camera, data)

    def submit(self, fn):
        """Queue a job before the next caption batch; return its Future."""
        return self.scheduler.submit(fn)

    def set_active(self, camera, active):
        """Caption ``camera``'s frames (True) or ignore them (False)."""
        self.scheduler.set_active(camera, active)

    def frame_stats(self, camera):
        """Return ``camera``'s frame counters (frames.CameraStats)."""
        return self.scheduler.stats[camera]

    # -- life ----------------------------------------------------------------
    @property
    def state(self):
        """Return 'running', 'stopped' or 'dead' (the thread ended itself)."""
        if self._thread is None:
            return 'stopped'
        return 'running' if self._thread.is_alive() else 'dead'

    def start(self):
        """
        Open the scheduler and start the thread (no-op if running).

        Returns the Future of ``prepare`` on the new thread, or None.
        """
        with self._lock:
            if self.state == 'running':
                return None
            self._stop.clear()
            self.scheduler.reopen()
            prepared = self._prepare()  # queued first: before any frame
            self._thread = threading.Thread(target=self._run,
                                            name='kosmos-worker', daemon=True)
            self._thread.start()
            return prepared

    def serve(self, engine, prepare=None):
        """
        Start over ``engine``, ``prepare(on_cold_shape=...)`` run first.

        Waits for ``prepare`` (a compile takes seconds to minutes) on the
        new thread and raises what it raised; it runs again on every thread
        ``supervise`` starts.
        """
        self.engine = engine
        self.prepare = prepare and functools.partial(
            prepare, on_cold_shape=self.cold_compile)
        prepared = self.start()
        if prepared is not None:
            prepared.result()

    def drop_engine(self):
        """Forget the engine and its ``prepare`` (it is being freed)."""
        self.engine = self.prepare = None

    def _prepare(self):
        """Queue ``prepare``: jobs go before any caption batch."""
        return self.scheduler.submit(self.prepare) if self.prepare else None

    def cold_compile(self, batch, slots, seconds):
        """Count and log a decode shape compiled while serving."""
        self.model.cold_compiles += 1
        self.model.last_cold_compile = (batch, slots, seconds)
        self._warn(('compile', batch, slots), 'compiled the decode step for '
                   'batch %d x %d slots while serving (%.1f s): that request '
                   'waited; set the largest max_new_tokens before activate '
                   'to warm it' % (batch, slots, seconds))

    def stop(self, timeout=2.0):
        """
        Stop within one generation step; fail queued jobs; drop frames.

        Returns True when the thread has ended.
        """
        with self._lock:
            self._stop.set()
            self.scheduler.close()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def stopping(self):
        """Whether a running generation should end at its next token."""
        return self._stop.is_set()

    def supervise(self):
        """
        Restart a thread that died; return the reason, or None if alive.

        Called periodically by the owner (the node's housekeeping timer).
        """
        with self._lock:
            if self._thread is None or self._thread.is_alive():
                return None
            self.model.restarts += 1
            reason = self.model.last_crash or 'the worker thread ended'
            self._log('fatal', 'captioning worker died (%s); restarting it '
                      '(restart %d)' % (reason, self.model.restarts))
            self._prepare()  # a failure ends its Future; jobs then go on
            self._thread = threading.Thread(target=self._run,
                                            name='kosmos-worker', daemon=True)
            self._thread.start()
            return reason

    # -- loop ----------------------------------------------------------------
    def _run(self):
        try:
            while not self._stop.is_set():
                self.step(timeout=0.5)
        except BaseException as error:  # reported by supervise()
            self.model.last_crash = '%s: %s' % (type(error).__name__, error)

    def step(self, timeout=0.5):
        """Run one job or one caption batch; return False if none came."""
        work = self.scheduler.next_work(self.max_batch, timeout=timeout)
        if work is None:
            return False
        try:
            if isinstance(work, list):
                self._caption(work)
            else:
                self.model.jobs += 1
                FrameScheduler.run_job(work)
        except Exception as error:  # a bug of ours: keep the loop alive
            self._warn('worker', 'unexpected error: %r' % error)
        return True

    def _caption(self, frames):
        items = []
        for frame in frames:
            try:
                image, bgr = self._convert(frame.data)
            except Exception as error:
                self._failed(frame.camera, 'conversion', error)
                continue
            items.append((frame, image, bgr))
        # One batch per colour order (cameras rarely mix them).
        for bgr in (False, True):
            group = [item for item in items if item[2] == bgr]
            if not group:
                continue
            if not self._caption_group(group, bgr) and len(group) > 1:
                for item in group:  # find the frame that failed the batch
                    self._caption_group([item], bgr)

    def _caption_group(self, group, bgr):
        """Caption and publish a group; return False if generation failed."""
        mode, queries = self.mode, self.queries  # this batch's values
        captions = mode != 'queries'
        queries = queries if mode != 'captions' else ()
        if not captions and not queries:
            return True  # nothing asked of these frames
        start = self._clock()
        for frame, _, _ in group:
            self.health[frame.camera].age_at_start.add(start - frame.received)
        images = [image for _, image, _ in group]
        try:
            embeds = self.engine.encode(images, bgr)
            results = self.engine.caption(
                images, prompt=self.prompt,
                max_new_tokens=self.max_new_tokens, bgr=bgr,
                should_stop=self.stopping, image_embeds=embeds) \
                if captions else [None] * len(group)
            found = self.engine.ground(
                embeds, [(i.shape[1], i.shape[0]) for i in images], queries,
                should_stop=self.stopping) if queries and not self.stopping() \
                else [[]] * len(group)
        except Exception as error:
            if len(group) == 1:
                self._failed(group[0][0].camera, 'captioning', error)
            return False
        if self.stopping():
            return True  # stopped mid-generation: publish nothing partial
        self.model.latency.add(self._clock() - start)
        self.model.batch_size.add(len(group))
        for row, (frame, image, _) in enumerate(group):
            if results[row] is not None:
                self.model.tokens.add(results[row].num_tokens)
            try:
                self._publish(frame, image, bgr, FrameResult(
                    results[row], list(zip(queries, found[row])),
                    embeds[row:row + 1]))
            except Exception as error:
                self._failed(frame.camera, 'publishing', error)
                continue
            health = self.health[frame.camera]
            health.captioned.tick()
            health.age_at_publish.add(self._clock() - frame.received)
        return True

    def _failed(self, camera, stage, error):
        health = self.health[camera]
        if isinstance(error, ImageError):
            health.malformed += 1
            what = 'malformed frame'
        else:
            health.failed += 1
            what = '%s failed' % stage
            error = '%s: %s' % (type(error).__name__, error)
        health.last_error = '%s: %s' % (what, error)
        self._warn((camera, stage), 'dropped a frame from %s: %s: %s (%d '
                   'malformed, %d failed so far)' % (
                       camera, what, error, health.malformed, health.failed))

    def _warn(self, key, text):
        if self._throttle.allow(key):
            self._log('warn', text)
