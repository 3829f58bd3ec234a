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
RViz markers of 3D detections: a box and a text label each.

Stock RViz does not draw vision_msgs/Detection3DArray (the
vision_msgs_rviz_plugins package does); these markers do, in the detections'
own frame. The colour is the label's, the same on every frame; each marker
has a lifetime, so one whose object is no longer seen vanishes, and ids are
per output (namespace) and position, so a newer frame replaces them.
"""

from builtin_interfaces.msg import Duration
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from ..pipeline.annotate import label_colour

MIN_SIZE = 0.01  # m: RViz hides a cube with a zero side
TEXT_HEIGHT = 0.08  # m, the label's letters


def markers_msg(located, namespace, lifetime):
    """Return a MarkerArray for a Detection3DArray (``lifetime`` seconds)."""
    out = MarkerArray()
    seconds = int(lifetime)
    life = Duration(sec=seconds, nanosec=int((lifetime - seconds) * 1e9))
    for k, det in enumerate(located.detections):
        hypothesis = det.results[0].hypothesis if det.results else None
        label = hypothesis.class_id if hypothesis else ''
        r, g, b = (c / 255.0 for c in label_colour(label))
        box = Marker(header=located.header, ns=namespace, id=2 * k,
                     type=Marker.CUBE, action=Marker.ADD, lifetime=life,
                     pose=det.bbox.center,
                     color=ColorRGBA(r=r, g=g, b=b, a=0.4))
        box.scale.x, box.scale.y, box.scale.z = (
            max(v, MIN_SIZE) for v in (det.bbox.size.x, det.bbox.size.y,
                                       det.bbox.size.z))
        text = Marker(header=located.header, ns=namespace, id=2 * k + 1,
                      type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                      lifetime=life, pose=det.bbox.center,
                      color=ColorRGBA(r=r, g=g, b=b, a=1.0))
        text.scale.z = TEXT_HEIGHT
        text.text = '%s %.2f' % (label, hypothesis.score) if hypothesis \
            else '?'
        out.markers += [box, text]
    return out
