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
What the node reports on /diagnostics, computed without ROS.

Counters and sliding windows per camera and for the model, and the rules
that turn them into a level (OK, WARN, ERROR) and a message. The node only
copies the result into diagnostic_updater's status.
"""

from collections import deque
from dataclasses import dataclass, field
import statistics
import threading
import time

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


class Meter:
    """Events per second over the last ``window`` seconds."""

    def __init__(self, window=10.0, clock=time.monotonic):
        self._times = deque()
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self.total = 0
        self.last = None  # clock time of the latest event

    def tick(self, count=1):
        """Record ``count`` events now."""
        now = self._clock()
        with self._lock:
            self.total += count
            self.last = now
            self._times.extend([now] * count)
            self._trim(now)

    def rate(self):
        """Events per second in the window."""
        now = self._clock()
        with self._lock:
            self._trim(now)
            return len(self._times) / self._window

    def _trim(self, now):
        while self._times and self._times[0] < now - self._window:
            self._times.popleft()


class Window:
    """The last ``size`` samples of a quantity: median and maximum."""

    def __init__(self, size=50):
        self._values = deque(maxlen=size)

    def add(self, value):
        """Record one sample."""
        self._values.append(float(value))

    def p50(self):
        """Median of the window, or 0.0 when empty."""
        values = list(self._values)
        return statistics.median(values) if values else 0.0

    def max(self):  # noqa: A003 (the statistic's name)
        """Maximum of the window, or 0.0 when empty."""
        values = list(self._values)
        return max(values) if values else 0.0

    def __len__(self):
        return len(self._values)


class Throttle:
    """Allow one message per key every ``period`` seconds; count the rest."""

    def __init__(self, period=5.0, clock=time.monotonic):
        self._period = period
        self._clock = clock
        self._next = {}
        self._lock = threading.Lock()

    def allow(self, key):
        """Return True if a message for ``key`` may be logged now."""
        now = self._clock()
        with self._lock:
            if now < self._next.get(key, 0.0):
                return False
            self._next[key] = now + self._period
            return True


@dataclass
class CameraHealth:
    """What happened to one camera's frames after they arrived."""

    frames_in: Meter = field(default_factory=Meter)
    captioned: Meter = field(default_factory=Meter)
    malformed: int = 0  # frames that could not be used as images
    failed: int = 0  # frames lost to any other error
    last_error: str = ''
    age_at_start: Window = field(default_factory=Window)  # seconds
    age_at_publish: Window = field(default_factory=Window)
    # 3D (cameras with a depth topic): boxes located, and the others by
    # reason ('no_depth_frame', 'no_valid_depth', 'no_transform', ...).
    depth: bool = False
    located: int = 0
    not_located: dict = field(default_factory=dict)
    last_depth_error: str = ''
    depth_failing: bool = False  # the last frame with boxes located none

    def depth_result(self, located, failures):
        """Count one frame's 3D outcome: ``failures`` is [(reason, why)]."""
        self.located += located
        for reason, why in failures:
            self.not_located[reason] = self.not_located.get(reason, 0) + 1
            self.last_depth_error = '%s: %s' % (reason, why)
        if located or failures:
            self.depth_failing = not located


@dataclass
class ModelHealth:
    """Generation figures over the last batches."""

    latency: Window = field(default_factory=Window)  # seconds per batch
    batch_size: Window = field(default_factory=Window)
    tokens: Window = field(default_factory=Window)  # per caption
    jobs: int = 0  # service calls run
    restarts: int = 0  # times the worker thread died and was restarted
    last_crash: str = ''
    # Decode shapes compiled while serving (not warmed at start): each cost
    # one request the compile time. (batch, slots, seconds) of the last.
    cold_compiles: int = 0
    last_cold_compile: tuple = ()


def camera_status(health, stats, listeners, subscribed, active,
                  frame_timeout, now=None):
    """
    Level, message and values of one camera.

    WARN when someone listens but no frame came for ``frame_timeout``
    seconds. ``stats`` is the scheduler's CameraStats (received, dropped).
    """
    now = time.monotonic() if now is None else now
    last = health.frames_in.last
    silent = None if last is None else now - last
    values = {
        'listeners': listeners, 'subscribed': subscribed,
        'input rate (Hz)': '%.2f' % health.frames_in.rate(),
        'captioned rate (Hz)': '%.2f' % health.captioned.rate(),
        'frames received': stats.received, 'frames captioned':
        health.captioned.total, 'frames dropped (replaced)': stats.dropped,
        'frames malformed': health.malformed, 'frames failed': health.failed,
        'frame age at start p50/max (s)': '%.3f / %.3f' % (
            health.age_at_start.p50(), health.age_at_start.max()),
        'frame age at publish p50/max (s)': '%.3f / %.3f' % (
            health.age_at_publish.p50(), health.age_at_publish.max()),
        'last error': health.last_error,
    }
    if health.depth:
        values['3D boxes located'] = health.located
        values['3D boxes not located'] = ', '.join(
            '%s: %d' % item for item in sorted(health.not_located.items())) \
            or '0'
        values['last 3D error'] = health.last_depth_error
    if not active:
        return OK, 'inactive', values
    if listeners and (silent is None or silent > frame_timeout):
        return WARN, ('no frames received yet' if silent is None else
                      'no frames for %.1f s' % silent), values
    if not listeners and not subscribed:
        return OK, 'idle: no listeners', values
    if health.depth and health.depth_failing:
        return WARN, 'no 3D positions: %s' % health.last_depth_error, values
    return OK, 'captioning at %.2f Hz' % health.captioned.rate(), values


def worker_status(model, state, rate, active, device='', gpu_memory=None):
    """
    Level, message and values of the model worker.

    ERROR when the worker is not running while active; WARN when a batch
    takes longer than the period the ``rate`` asks for.
    """
    values = {
        'state': state, 'device': device,
        'generation latency p50/max (s)': '%.3f / %.3f' % (
            model.latency.p50(), model.latency.max()),
        'batch size p50': '%.1f' % model.batch_size.p50(),
        'tokens per caption p50': '%.1f' % model.tokens.p50(),
        'service calls run': model.jobs,
        'worker restarts': model.restarts, 'last crash': model.last_crash,
        'decode shapes compiled while serving': model.cold_compiles,
    }
    if gpu_memory is not None:
        values['GPU memory allocated (MB)'] = '%.1f' % (gpu_memory / 2 ** 20)
    if not active:
        return OK, 'inactive (%s)' % state, values
    if state != 'running':
        return ERROR, 'worker is %s%s' % (
            state, ': ' + model.last_crash if model.last_crash else ''), values
    if rate > 0 and len(model.latency) and model.latency.p50() > 1.0 / rate:
        return WARN, 'generation p50 %.2f s exceeds the %.2f s period of ' \
            'rate %g' % (model.latency.p50(), 1.0 / rate, rate), values
    if model.restarts:
        return WARN, 'running; restarted %d time(s), last: %s' % (
            model.restarts, model.last_crash), values
    if model.cold_compiles:
        batch, slots, seconds = model.last_cold_compile
        return OK, 'running; %d decode shape(s) compiled while serving, ' \
            'last batch %d x %d slots in %.1f s' % (
                model.cold_compiles, batch, slots, seconds), values
    return OK, 'running', values
