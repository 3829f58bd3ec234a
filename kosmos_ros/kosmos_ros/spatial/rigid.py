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
A rigid transform (a TF transform) applied to box poses (no ROS).

What tf2's ``do_transform_pose`` does, in numpy: rotate and translate the
centre, compose the orientations. Quaternions are (x, y, z, w) as in
geometry_msgs. A box's size stays in its own frame, which turns with it.
"""

import numpy as np


def quaternion_multiply(a, b):
    """Return the quaternion a * b (rotate by b, then by a), (x, y, z, w)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz)


def rotate(q, point):
    """Rotate a 3D point by the unit quaternion q (x, y, z, w)."""
    u = np.array(q[:3], dtype=float)
    w = float(q[3])
    p = np.array(point, dtype=float)
    t = 2.0 * np.cross(u, p)
    return p + w * t + np.cross(u, t)


def transform_pose(translation, rotation, position, orientation=(0, 0, 0, 1)):
    """Express a pose given in the source frame in the target frame."""
    moved = rotate(rotation, position) + np.asarray(translation, dtype=float)
    return tuple(float(v) for v in moved), \
        quaternion_multiply(rotation, orientation)
