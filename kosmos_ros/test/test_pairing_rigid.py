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
"""Depth/colour pairing by stamp, and poses moved by a TF transform."""

import math

from kosmos_ros.spatial.pairing import Pairing
from kosmos_ros.spatial.rigid import quaternion_multiply, rotate, transform_pose
import numpy as np
import pytest

# camera_link -> camera optical frame, as every ROS camera driver publishes
# it (REP 103): optical z forward = link x, optical x right = link -y,
# optical y down = link -z.
OPTICAL_IN_LINK = (-0.5, 0.5, -0.5, 0.5)


def test_each_colour_frame_gets_the_nearest_depth_frame_within_slop():
    pairs = Pairing()
    pairs.colour(10.00)
    assert pairs.partner(10.00, 0.05) == (None, 'no depth frame received')
    pairs.depth(9.90, 'd9.90')
    pairs.depth(10.04, 'd10.04')  # after the colour frame: still paired
    pairs.colour(10.10)  # a depth frame from before it
    pairs.depth(10.30, 'd10.30')
    assert pairs.partner(10.00, 0.05) == ('d10.04', None)
    assert pairs.partner(10.10, 0.07) == ('d10.04', None)
    item, why = pairs.partner(10.10, 0.05)
    assert item is None and '0.060 s from the colour frame' in why


def test_a_colour_frame_processed_late_keeps_its_partner():
    # The model takes seconds: a hundred depth frames go by meanwhile.
    pairs = Pairing(colours=2, depths=4)
    pairs.depth(5.00, 'then')
    pairs.colour(5.01)
    for k in range(100):
        pairs.depth(5.1 + k / 30, 'later %d' % k)
    assert pairs.partner(5.01, 0.05) == ('then', None)


def test_only_the_last_colour_frames_are_kept():
    pairs = Pairing(colours=2)
    pairs.depth(1.0, 'd')
    for stamp in (1.0, 1.01, 1.02):
        pairs.colour(stamp)
    assert pairs.partner(1.0, 1.0)[0] is None, 'the oldest was dropped'
    assert pairs.partner(1.02, 1.0) == ('d', None)
    pairs.clear()
    assert pairs.partner(1.02, 1.0)[0] is None


def test_rotation_and_composition():
    quarter_z = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))
    assert rotate(quarter_z, (1, 0, 0)) == pytest.approx([0, 1, 0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = (q / np.linalg.norm(q) for q in rng.normal(size=(2, 4)))
        p = rng.normal(size=3)
        assert rotate(quaternion_multiply(a, b), p) == \
            pytest.approx(rotate(a, rotate(b, p)))


def test_a_point_ahead_of_the_camera_is_ahead_of_the_robot():
    # Camera 0.2 m forward and 1.0 m up on base_link, looking forward.
    position, orientation = transform_pose(
        (0.2, 0.0, 1.0), OPTICAL_IN_LINK, (0.1, -0.3, 2.0))
    # 2 m ahead, 0.1 m right (-y), 0.3 m up (+z) of the camera.
    assert position == pytest.approx((2.2, -0.1, 1.3))
    assert orientation == pytest.approx(OPTICAL_IN_LINK)
