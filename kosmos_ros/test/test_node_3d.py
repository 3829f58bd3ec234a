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
3D positions on kosmos_node: depth, CameraInfo and TF (needs ROS 2).

The tiny model's boxes are random, so the scene is one whose geometry makes
every box's answer known: a flat wall facing the camera at Z metres. A box
centred on pixel (u, v) is then at ((u - cx) / fx * Z, (v - cy) / fy * Z, Z)
in the optical frame. Accuracy on objects in front of a wall, noise and
distortion is the ROS-free test_depth's job; here: the plumbing.
"""

import math
import time

from conftest import make_frame, require_ros
import numpy as np
import pytest

require_ros('tf2_ros')

from geometry_msgs.msg import TransformStamped  # noqa: E402, I100
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from tf2_ros import StaticTransformBroadcaster  # noqa: E402
from vision_msgs.msg import Detection2DArray, Detection3DArray  # noqa: E402

from ros_harness import call, image_msg, wait_for  # noqa: E402, I100

pytestmark = pytest.mark.ros
W, H, FX, FY, CX, CY = 320, 240, 300.0, 310.0, 159.5, 119.5
WALL = 2.0
OPTICAL = 'cam_optical'


def info_msg(width=W, height=H, sec=42):
    msg = CameraInfo(width=width, height=height, distortion_model='plumb_bob')
    msg.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    msg.d = [0.0] * 5
    msg.header.frame_id = OPTICAL
    msg.header.stamp.sec = sec
    return msg


def depth_msg(encoding='32FC1', sec=42, nanosec=7, width=W, height=H,
              step=None):
    if encoding == '32FC1':
        data = np.full((height, width), WALL, np.float32)
    else:
        data = np.full((height, width), int(WALL * 1000), np.uint16)
    msg = Image(height=height, width=width, encoding=encoding,
                is_bigendian=0, step=width * data.itemsize,
                data=data.tobytes())
    msg.header.frame_id = OPTICAL
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    if step is not None:  # a hostile sender: step and data disagree
        msg.step = step
    return msg


class Scene:
    """A camera with colour, depth and CameraInfo publishers."""

    def __init__(self, harness, **params):
        self.h = harness(depth_topics=['cam/depth/image_raw'], mode='captions',
                         **params)
        self.colour = self.h.publisher('cam/image_raw')
        self.depth = self.h.publisher('cam/depth/image_raw')
        self.info = self.h.publisher('cam/depth/camera_info', CameraInfo)
        self.flat = self.h.listen('cam/image_raw/kosmos/detections',
                                  Detection2DArray)
        self.boxes = self.h.listen('cam/image_raw/kosmos/detections_3d',
                                   Detection3DArray)
        self.frame = make_frame(H, W, seed=11)

    def run(self, count=1, depth=True, timeout=30.0, **depth_args):
        """Publish colour (+ depth, info) at rising stamps until ``count``."""
        box = self.boxes if depth else self.flat
        # The node subscribes colour and depth one after the other: a colour
        # frame taken before the depth subscription exists has no partner.
        assert not depth or wait_for(
            lambda: self.depth.get_subscription_count() > 0 and
            self.info.get_subscription_count() > 0), 'depth never subscribed'
        sec = 100
        deadline = time.monotonic() + timeout
        while len(box) < count and time.monotonic() < deadline:
            if depth:
                self.info.publish(info_msg(sec=sec))
                self.depth.publish(depth_msg(sec=sec, **depth_args))
            self.colour.publish(image_msg(self.frame, sec=sec))
            sec += 1
            time.sleep(0.1)
        return len(box) >= count

    def camera(self):
        return self.h.camera()

    def pairs(self):
        """(2D detection, 3D detection) of one frame, matched by track id."""
        located = self.boxes[-1]
        stamp = located.header.stamp
        # Two topics: the 2D message may be delivered after the 3D one.
        assert wait_for(lambda: any(m.header.stamp == stamp
                                    for m in self.flat))
        flat = next(m for m in self.flat if m.header.stamp == stamp)
        by_id = {d.id: d for d in flat.detections}
        return flat, located, [(by_id[d.id], d) for d in located.detections]


def expected(det2d):
    u, v = det2d.bbox.center.position.x, det2d.bbox.center.position.y
    # Box edges are normalised x * W; pixel centres sit at whole numbers.
    return ((u - 0.5 - CX) / FX * WALL, (v - 0.5 - CY) / FY * WALL, WALL)


@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
def test_boxes_come_back_on_the_wall_in_the_optical_frame(harness, encoding):
    scene = Scene(harness)
    assert scene.run(2, encoding=encoding), 'no 3D detections'
    flat, located, pairs = scene.pairs()
    assert located.header.frame_id == OPTICAL
    assert located.header.stamp == flat.header.stamp  # the colour frame's
    health = scene.camera().health
    assert pairs, 'every box of a flat wall has depth'
    for det2d, det3d in pairs:
        position = det3d.bbox.center.position
        assert (position.x, position.y, position.z) == \
            pytest.approx(expected(det2d), abs=1e-4)
        assert det3d.bbox.size.x == pytest.approx(
            det2d.bbox.size_x / FX * WALL, abs=1e-4)
        assert det3d.bbox.size.y == pytest.approx(
            det2d.bbox.size_y / FY * WALL, abs=1e-4)
        assert det3d.bbox.size.z == pytest.approx(0.0, abs=1e-4)  # a wall
        hyp, hyp2d = det3d.results[0].hypothesis, det2d.results[0].hypothesis
        assert (hyp.class_id, hyp.score) == (hyp2d.class_id, hyp2d.score)
        assert det3d.id and det3d.id == det2d.id
    assert health.located >= len(pairs)
    # Only a box too small to hold 10 valid pixels in its central half is
    # left out, with its reason.
    assert set(health.not_located) <= {'no_valid_depth'}
    kept = {det3d.id for _, det3d in pairs}
    for det in flat.detections:
        if det.id not in kept:
            assert det.bbox.size_x * det.bbox.size_y / 4 < 20, det.bbox


def test_target_frame_through_tf(harness):
    scene = Scene(harness, target_frame='base_link')
    # The camera 0.2 m forward and 1.0 m up on base_link, looking forward
    # (REP 103: optical z = link x, optical x = -y, optical y = -z).
    tf = TransformStamped()
    tf.header.frame_id, tf.child_frame_id = 'base_link', OPTICAL
    tf.transform.translation.x, tf.transform.translation.z = 0.2, 1.0
    r = tf.transform.rotation
    r.x, r.y, r.z, r.w = -0.5, 0.5, -0.5, 0.5
    StaticTransformBroadcaster(scene.h.peer).sendTransform(tf)
    assert scene.run(2), 'no 3D detections'
    _, located, pairs = scene.pairs()
    assert located.header.frame_id == 'base_link'
    assert pairs
    for det2d, det3d in pairs:
        x, y, z = expected(det2d)
        p = det3d.bbox.center.position
        assert (p.x, p.y, p.z) == pytest.approx((z + 0.2, -x, 1.0 - y),
                                                abs=1e-4)
        q = det3d.bbox.center.orientation  # q and -q: the same rotation
        dot = np.dot((q.x, q.y, q.z, q.w), (-0.5, 0.5, -0.5, 0.5))
        assert abs(dot) == pytest.approx(1.0)


def test_without_depth_frames_2d_goes_on_and_the_reason_is_counted(harness):
    scene = Scene(harness)
    assert scene.run(3, depth=False), '2D captions continue without depth'
    health = scene.camera().health
    assert wait_for(lambda: health.not_located.get('no_depth_frame'))
    assert not scene.boxes
    assert 'no depth frame received' in health.last_depth_error
    assert health.depth_failing


@pytest.mark.parametrize('params, depth_args, reason, words', [
    ({'target_frame': 'map'}, {}, 'no_transform',
     'no transform from cam_optical to map'),
    ({}, {'width': W // 2, 'height': H // 2}, 'size_mismatch',
     'depth image is 160x120, camera info 320x240'),
    ({'depth_slop': 0.0}, {'nanosec': 500_000_000}, 'no_depth_frame',
     '0.500 s from the colour frame'),
    ({}, {'step': 7}, 'bad_depth_image', 'depth step/size mismatch'),
    ({}, {'encoding': '16UC1', 'width': W}, None, None),
])
def test_each_failure_gives_its_reason(harness, params, depth_args, reason,
                                       words):
    scene = Scene(harness, **params)
    if reason is None:  # the control: the same run without a fault
        assert scene.run(1, **depth_args)
        return
    health = scene.camera().health
    scene.run(1, timeout=4.0, **depth_args)
    assert wait_for(lambda: health.not_located.get(reason)), \
        health.not_located
    assert words in health.last_depth_error
    assert not any(m.detections for m in scene.boxes), \
        'a box without a position is left out'
    assert scene.flat, 'the 2D outputs still go out'
    assert health.depth_failing


def test_locate_answers_in_3d_too(harness):
    from kosmos_ros_interfaces.srv import Locate
    scene = Scene(harness)
    assert scene.run(1)
    answer = call(scene.h, Locate, '/kosmos/locate',
                  Locate.Request(phrase='a red cup'))
    assert answer.success, answer.message
    assert answer.detections_3d.header.frame_id == OPTICAL
    assert len(answer.detections_3d.detections) <= \
        len(answer.detections.detections)
    for det in answer.detections_3d.detections:
        assert det.bbox.center.position.z == pytest.approx(WALL)
        assert math.isfinite(det.bbox.center.position.x)


# -- issue 19: markers and the RViz config ----------------------------------------

def test_markers_draw_each_3d_box_with_its_label_while_subscribed(
        harness, monkeypatch):
    from visualization_msgs.msg import Marker, MarkerArray
    from kosmos_ros.ros import outputs
    made = []
    real = outputs.markers.markers_msg
    monkeypatch.setattr(outputs.markers, 'markers_msg',
                        lambda *a: made.append(1) or real(*a))
    scene = Scene(harness, marker_lifetime=0.5)
    assert scene.run(2), 'no 3D detections'
    assert made == [], 'nobody subscribed to the markers: none are made'
    drawn = scene.h.listen('cam/image_raw/kosmos/markers', MarkerArray)
    assert scene.run(len(scene.boxes) + 2)
    assert wait_for(lambda: drawn)
    msg = drawn[-1]
    stamp = msg.markers[0].header.stamp
    located = next(m for m in scene.boxes if m.header.stamp == stamp)
    assert len(msg.markers) == 2 * len(located.detections) > 0
    colours = {}
    for k, det in enumerate(located.detections):
        box, text = msg.markers[2 * k], msg.markers[2 * k + 1]
        hyp = det.results[0].hypothesis
        assert (box.type, text.type) == (Marker.CUBE, Marker.TEXT_VIEW_FACING)
        assert box.header.frame_id == located.header.frame_id == OPTICAL
        assert box.ns == text.ns == 'captions'
        assert box.pose == det.bbox.center == text.pose
        assert box.scale.x == pytest.approx(max(det.bbox.size.x, 0.01))
        assert text.text == '%s %.2f' % (hyp.class_id, hyp.score)
        assert (box.lifetime.sec, box.lifetime.nanosec) == (0, 500_000_000)
        colour = (box.color.r, box.color.g, box.color.b)
        assert colours.setdefault(hyp.class_id, colour) == colour
    # min_score: boxes below it are on no output, markers included.
    scene.h.node.set_parameters([Parameter('min_score', value=1.0)])
    count = len(drawn)
    assert scene.run(len(scene.boxes) + 2)
    assert wait_for(lambda: len(drawn) > count + 1)
    assert drawn[-1].markers == [] and scene.boxes[-1].detections == []


def test_the_rviz_config_names_topics_the_node_publishes(ros, engine):
    from pathlib import Path
    import yaml
    from kosmos_ros.ros.node import KosmosNode
    path = Path(__file__).resolve().parents[1] / 'rviz' / 'kosmos.rviz'
    config = yaml.safe_load(path.read_text())
    displays = {d['Class']: d for d in
                config['Visualization Manager']['Displays']}
    wanted = {displays['rviz_default_plugins/Image']['Topic']['Value']:
              'sensor_msgs/msg/Image',
              displays['rviz_default_plugins/MarkerArray']['Topic']['Value']:
              'visualization_msgs/msg/MarkerArray'}
    assert 'rviz_default_plugins/TF' in displays
    # The node as the README starts it: the default camera, with depth.
    node = KosmosNode(engine=engine, parameter_overrides=[
        Parameter('depth_topics', value=['depth/image_raw'])])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        # The node's own publishers (the graph would also list other
        # processes' nodes of the same name).
        published = {p.topic_name: '%s/msg/%s' % (
            p.msg_type.__module__.split('.')[0], p.msg_type.__name__)
            for p in node.publishers}
        for topic, kind in wanted.items():
            assert topic in published, (topic, sorted(published))
            assert published[topic] == kind
    finally:
        node.trigger_cleanup()
        node.destroy_node()
