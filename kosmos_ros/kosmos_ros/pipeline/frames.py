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
Frame scheduling between camera callbacks and the one inference worker.

Cameras publish far faster than a VLM captions, so each camera has one slot
holding its newest frame: a frame that arrives before the previous one was
started replaces it (and counts as dropped). The worker takes ready frames
round-robin across cameras, at most ``max_batch`` at a time, no faster than
``max_rate_hz`` batches per second. Queued jobs (service calls) go before the
next caption batch and are not rate limited. Nothing here grows with the
input rate: memory is one frame per camera plus the waiting jobs.
"""

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
import threading
import time
from typing import Any


@dataclass
class Frame:
    """A frame waiting in its camera's slot."""

    camera: str
    data: Any
    received: float  # scheduler clock when it arrived


@dataclass
class CameraStats:
    """Counters of one camera's frames."""

    received: int = 0
    processed: int = 0
    dropped: int = 0  # replaced by a newer frame before being started
    ignored: int = 0  # arrived while the camera was inactive (nobody listens)


@dataclass
class _Job:
    fn: Any
    future: Future = field(default_factory=Future)


class FrameScheduler:
    """Latest-frame slots per camera, a rate cap and a priority job queue."""

    def __init__(self, cameras, max_rate_hz=0.0, clock=time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._slots = dict.fromkeys(cameras)
        self._order = list(cameras)
        self._active = dict.fromkeys(cameras, True)
        self.stats = {name: CameraStats() for name in cameras}
        self._jobs = deque()
        self._next_start = 0.0
        self._rr = 0  # index of the camera to serve first next time
        self._closed = False
        self.max_backlog = 0  # most frames waiting at once, all cameras
        self.max_rate_hz = max_rate_hz

    @property
    def max_rate_hz(self):
        """Caption batches per second at most; 0 means no limit."""
        return self._rate

    @max_rate_hz.setter
    def max_rate_hz(self, rate):
        if rate < 0 or rate != rate:
            raise ValueError('rate must be >= 0 (0 = unlimited), got %r'
                             % rate)
        with self._cond:
            self._rate = float(rate)
            self._cond.notify_all()

    def set_active(self, camera, active):
        """Mark a camera (in)active; an inactive camera keeps no frame."""
        with self._cond:
            self._active[camera] = bool(active)
            if not active:
                self._slots[camera] = None

    def put(self, camera, data):
        """Offer a camera's newest frame; return False if it was ignored."""
        with self._cond:
            stats = self.stats[camera]
            stats.received += 1
            if self._closed or not self._active[camera]:
                stats.ignored += 1
                return False
            if self._slots[camera] is not None:
                stats.dropped += 1
            self._slots[camera] = Frame(camera, data, self._clock())
            backlog = sum(slot is not None for slot in self._slots.values())
            self.max_backlog = max(self.max_backlog, backlog)
            self._cond.notify_all()
            return True

    def latest_backlog(self):
        """Frames waiting now, all cameras."""
        with self._cond:
            return sum(slot is not None for slot in self._slots.values())

    def submit(self, fn):
        """Queue ``fn()`` to run on the worker before the next caption batch."""
        job = _Job(fn)
        with self._cond:
            if self._closed:  # not running: the caller sees CancelledError
                job.future.cancel()
                return job.future
            self._jobs.append(job)
            self._cond.notify_all()
        return job.future

    def close(self):
        """Wake the worker, cancel queued jobs; ``next_work`` returns None."""
        with self._cond:
            self._closed = True
            for job in self._jobs:
                job.future.cancel()
            self._jobs.clear()
            self._cond.notify_all()

    def reopen(self):
        """Accept frames and jobs again after ``close`` (slots start empty)."""
        with self._cond:
            self._closed = False
            self._slots = dict.fromkeys(self._order)

    def next_work(self, max_batch=1, timeout=None):
        """
        Block until there is work; return a job, a list of frames, or None.

        A job is a ``_Job`` (call ``run_job``); frames come round-robin from
        distinct cameras, at most ``max_batch``. None means closed or timeout.
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                if self._jobs:
                    return self._jobs.popleft()
                now = self._clock()
                waiting = [n for n in self._order if self._slots[n] is not None]
                wait = None
                if waiting:
                    if now >= self._next_start:
                        return self._take_frames(max_batch, now)
                    wait = self._next_start - now
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def _take_frames(self, max_batch, now):
        frames = []
        count = len(self._order)
        for k in range(count):
            name = self._order[(self._rr + k) % count]
            if self._slots[name] is not None:
                frames.append(self._slots[name])
                self._slots[name] = None
                self.stats[name].processed += 1
                if len(frames) == max_batch:
                    self._rr = (self._order.index(name) + 1) % count
                    break
        else:
            self._rr = (self._order.index(frames[-1].camera) + 1) % count
        # The cap spaces batch starts by 1/rate; with no cap it is a no-op.
        self._next_start = now + 1.0 / self._rate if self._rate > 0 else now
        return frames

    @staticmethod
    def run_job(job):
        """Run a queued job on the calling (worker) thread."""
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn())
        except BaseException as error:  # handed to the caller, not raised here
            job.future.set_exception(error)
