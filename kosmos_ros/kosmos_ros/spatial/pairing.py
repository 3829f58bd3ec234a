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
Pair colour frames with the depth frame nearest in time (no ROS).

Approximate-time pairing, as message_filters' ApproximateTime does it for
two streams, decided as messages arrive: each colour frame remembers the
nearest depth frame seen so far, from the few depth frames already kept and
from every later one. The pair is read when the colour frame's results are
published, which on a busy model is seconds later: by then the depth
frames of that moment would be long gone from any short buffer, while here
only the last few colour frames (the ones the latest-frame slot and the
model can still hold) keep their partners. A colour frame with no depth
frame within ``slop`` is captioned in 2D only.
"""

from collections import deque, OrderedDict
import math
import threading


class Pairing:
    """Nearest depth item for each of the last ``colours`` colour stamps."""

    def __init__(self, colours=4, depths=4):
        self._depths = deque(maxlen=depths)  # (stamp, item)
        self._colours = OrderedDict()  # stamp -> [gap, item]
        self._size = colours
        self._lock = threading.Lock()

    def colour(self, stamp):
        """Note a colour frame stamped ``stamp`` (seconds)."""
        with self._lock:
            best = [math.inf, None]
            for depth_stamp, item in self._depths:
                gap = abs(depth_stamp - stamp)
                if gap < best[0]:
                    best = [gap, item]
            self._colours[stamp] = best
            self._colours.move_to_end(stamp)
            while len(self._colours) > self._size:
                self._colours.popitem(last=False)

    def depth(self, stamp, item):
        """Note a depth frame: it may be nearer to a waiting colour frame."""
        with self._lock:
            self._depths.append((stamp, item))
            for colour_stamp, best in self._colours.items():
                gap = abs(colour_stamp - stamp)
                if gap < best[0]:
                    best[:] = [gap, item]

    def partner(self, stamp, slop):
        """Return (item, None), or (None, why) when none is within slop."""
        with self._lock:
            gap, item = self._colours.get(stamp, (math.inf, None))
        if item is None:
            return None, 'no depth frame received'
        if gap > slop:
            return None, 'nearest depth frame is %.3f s from the colour ' \
                'frame (depth_slop %.3f s)' % (gap, slop)
        return item, None

    def clear(self):
        """Forget everything (the streams were unsubscribed)."""
        with self._lock:
            self._depths.clear()
            self._colours.clear()
