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
"""kosmos_node over rclpy: images in, detections out (skipped without ROS 2)."""

import os
import signal
import subprocess
import sys
import threading
import time

from conftest import BOX_PROMPT, make_frame
import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip(
    'rclpy', reason='rclpy not available: source /opt/ros/<distro>/setup.bash '
    '(and the workspace with kosmos_ros_interfaces) to run the node tests')
pytest.importorskip(
    'kosmos_ros_interfaces.msg', reason='kosmos_ros_interfaces is not built: '
    'colcon build it and source install/setup.bash')
pytest.importorskip('cv_bridge', reason='cv_bridge not available')

from kosmos_ros_interfaces.msg import Caption  # noqa: E402, I100
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from kosmos_ros.node import KosmosNode  # noqa: E402, I100

pytestmark = pytest.mark.ros


def wait_for(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def image_msg(frame, encoding='rgb8', frame_id='front_cam', sec=42):
    msg = Image(height=frame.shape[0], width=frame.shape[1],
                encoding=encoding, is_bigendian=0)
    msg.step = frame.shape[1] * (frame.shape[2] if frame.ndim == 3 else 1)
    msg.data = frame.tobytes()
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 7
    return msg


def jpeg_msg(frame, frame_id='front_cam'):
    msg = CompressedImage(format='jpeg')
    msg.data = cv2.imencode('.jpg', frame)[1].tobytes()
    msg.header.frame_id = frame_id
    return msg


@pytest.fixture(scope='module')
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


class Harness:
    """A KosmosNode on the tiny engine, a peer node, one executor thread."""

    count = 0

    def __init__(self, engine, **params):
        Harness.count += 1
        self.ns = '/t%d' % Harness.count
        topics = params.pop('image_topics', ['cam/image_raw'])
        values = {'image_topics': ['%s/%s' % (self.ns, t) for t in topics],
                  'prompt': BOX_PROMPT, 'rate': 0.0, 'max_new_tokens': 6}
        values.update(params)
        self.node = KosmosNode(engine=engine, parameter_overrides=[
            Parameter(k, value=v) for k, v in values.items()])
        self.peer = rclpy.create_node('peer%d' % Harness.count)
        self.executor = MultiThreadedExecutor(num_threads=3)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.received = {}

    def listen(self, topic, kind):
        box = self.received.setdefault(topic, [])
        self.peer.create_subscription(kind, self.ns + '/' + topic,
                                      box.append, 10)
        return box

    def publisher(self, topic, kind=Image):
        return self.peer.create_publisher(kind, self.ns + '/' + topic,
                                          qos_profile_sensor_data)

    def publish_until(self, pub, msg, box, count=1, timeout=20.0):
        end = time.monotonic() + timeout
        while len(box) < count and time.monotonic() < end:
            pub.publish(msg)
            time.sleep(0.05)
        return len(box) >= count

    def close(self):
        self.node.shutdown()
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()


@pytest.fixture
def harness(ros, engine):
    made = []

    def make(**params):
        made.append(Harness(engine, **params))
        return made[-1]
    yield make
    for h in made:
        h.close()


def test_detections_carry_the_source_header_and_pixel_boxes(harness):
    h = harness()
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    caps = h.listen('cam/image_raw/kosmos/caption', Caption)
    frame = make_frame(240, 320)
    assert h.publish_until(h.publisher('cam/image_raw'), image_msg(frame),
                           dets)
    assert wait_for(lambda: caps)
    msg = dets[0]
    assert msg.header.frame_id == 'front_cam'
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (42, 7)
    assert msg.detections, 'the open-object prompt yields boxes'
    for det in msg.detections:
        assert det.header == msg.header
        hyp = det.results[0].hypothesis
        assert hyp.class_id == 'a red cup'
        assert 0.0 < hyp.score <= 1.0
        c, sx, sy = det.bbox.center.position, det.bbox.size_x, det.bbox.size_y
        assert sx > 0 and sy > 0
        assert 0 <= c.x - sx / 2 and c.x + sx / 2 <= 320 + 1e-6
        assert 0 <= c.y - sy / 2 and c.y + sy / 2 <= 240 + 1e-6
    assert caps[0].header == msg.header
    assert caps[0].text.startswith('a red cup')
    assert caps[0].phrases[0] == 'a red cup'


def test_several_cameras_one_of_them_compressed(harness):
    h = harness(image_topics=['left/image_raw', 'right/image_raw/compressed'])
    left = h.listen('left/image_raw/kosmos/detections', Detection2DArray)
    right = h.listen('right/image_raw/kosmos/detections', Detection2DArray)
    pub_l = h.publisher('left/image_raw')
    pub_r = h.publisher('right/image_raw/compressed', CompressedImage)
    frame = make_frame(120, 160, 3)
    end = time.monotonic() + 20
    while (not left or not right) and time.monotonic() < end:
        pub_l.publish(image_msg(frame, 'bgr8', 'left'))
        pub_r.publish(jpeg_msg(frame, 'right'))
        time.sleep(0.05)
    assert left and right
    assert left[0].header.frame_id == 'left'
    assert right[0].header.frame_id == 'right'


def test_annotated_image_only_while_subscribed(harness):
    h = harness()
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    pub = h.publisher('cam/image_raw')
    frame = make_frame(240, 320)
    assert h.publish_until(pub, image_msg(frame), dets, count=3)
    camera = h.node.cameras[h.ns + '/cam/image_raw']
    assert camera.annotated_published == 0
    annotated = h.listen('cam/image_raw/kosmos/annotated', Image)
    assert h.publish_until(pub, image_msg(frame), annotated)
    assert annotated[0].header.frame_id == 'front_cam'
    assert (annotated[0].width, annotated[0].height) == (320, 240)
    assert annotated[0].encoding == 'rgb8'


def test_malformed_frames_are_counted_and_the_node_keeps_serving(harness):
    h = harness(image_topics=['cam/image_raw', 'cam2/image_raw/compressed'])
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    h.listen('cam2/image_raw/compressed/kosmos/detections', Detection2DArray)
    h.listen('cam2/image_raw/kosmos/detections', Detection2DArray)
    pub = h.publisher('cam/image_raw')
    pub2 = h.publisher('cam2/image_raw/compressed', CompressedImage)
    camera = h.node.cameras[h.ns + '/cam/image_raw']
    camera2 = h.node.cameras[h.ns + '/cam2/image_raw/compressed']
    assert wait_for(lambda: camera.subscription and camera2.subscription)
    time.sleep(0.5)  # discovery
    frame = make_frame(60, 80)
    bad = [image_msg(frame, encoding='16UC1'),
           image_msg(np.zeros((0, 0, 3), np.uint8))]
    short = image_msg(frame)
    short.data = short.data[:-10]
    bad.append(short)
    for msg in bad:
        pub.publish(msg)
        assert wait_for(lambda: h.node.scheduler.latest_backlog() == 0)
        time.sleep(0.1)
    corrupt = CompressedImage(format='jpeg', data=b'\xff\xd8garbage')
    pub2.publish(corrupt)
    assert wait_for(lambda: camera2.malformed == 1)
    assert wait_for(lambda: camera.malformed == 3), camera.last_error
    assert h.publish_until(pub, image_msg(frame), dets)
    assert camera.published >= 1


def test_rate_cap_is_held(harness):
    h = harness(rate=2.0)
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    pub = h.publisher('cam/image_raw')
    msg = image_msg(make_frame(60, 80))
    assert h.publish_until(pub, msg, dets)
    start, first = time.monotonic(), len(dets)
    while time.monotonic() - start < 2.0:
        pub.publish(msg)
        time.sleep(0.01)
    time.sleep(0.2)
    # 2 Hz over ~2.2 s: at most 5 more, where the tiny model alone does 20+.
    assert 2 <= len(dets) - first <= 5
    stats = h.node.scheduler.stats[h.ns + '/cam/image_raw']
    assert stats.dropped > 50


def test_lazy_camera_costs_nothing_until_someone_listens(harness):
    h = harness()
    pub = h.publisher('cam/image_raw')
    msg = image_msg(make_frame(60, 80))
    camera = h.node.cameras[h.ns + '/cam/image_raw']
    for _ in range(20):
        pub.publish(msg)
        time.sleep(0.05)
    assert camera.subscription is None
    assert h.node.scheduler.stats[h.ns + '/cam/image_raw'].processed == 0
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    assert h.publish_until(pub, msg, dets)
    assert camera.subscription is not None


def test_runtime_parameters_are_validated(harness):
    h = harness()
    node = h.node

    def reason(name, value):
        (result,) = node.set_parameters([Parameter(name, value=value)])
        return result.successful, result.reason
    assert reason('rate', -1.0)[0] is False
    assert reason('prompt', '')[0] is False
    assert reason('prompt', 'x' * 5000)[0] is False
    assert reason('max_new_tokens', 0)[0] is False
    assert reason('max_new_tokens', 100_000)[0] is False
    ok, why = reason('model', 'other/model')
    assert not ok and 'read-only' in why
    assert reason('rate', 5.0) == (True, '')
    assert node.scheduler.max_rate_hz == 5.0
    assert reason('prompt', '<grounding>A photo of') == (True, '')
    assert reason('max_new_tokens', 12) == (True, '')


def test_bad_image_topics_are_refused(ros, engine):
    with pytest.raises(ValueError, match='distinct'):
        KosmosNode(engine=engine, parameter_overrides=[
            Parameter('image_topics', value=['a', 'a'])])


def test_node_process_loads_the_model_and_stops_on_ctrl_c_within_2s(
        ros, tiny_model_dir):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    topic = '/proc_test/image_raw'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'kosmos_ros.node', '--ros-args',
         '-p', 'model:=%s' % tiny_model_dir, '-p', 'device:=cpu',
         '-p', 'image_topics:=[%s]' % topic, '-p', 'lazy:=false',
         '-p', 'rate:=0.0', '-p', 'max_new_tokens:=512'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout),
                              daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: any('ready' in x for x in lines), 60), lines
        peer = rclpy.create_node('ctrl_c_peer')
        pub = peer.create_publisher(Image, topic, qos_profile_sensor_data)
        msg = image_msg(make_frame(120, 160))
        for _ in range(20):  # keep the worker busy generating
            pub.publish(msg)
            time.sleep(0.05)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert time.monotonic() - start < 2.0
        peer.destroy_node()
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(2)
    text = ''.join(lines)
    assert 'model loaded on cpu' in text
    assert 'Traceback' not in text, text
