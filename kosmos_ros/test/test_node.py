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
    assert reason('answer_max_new_tokens', 0)[0] is False
    ok, why = reason('model', 'other/model')
    assert not ok and 'read-only' in why
    assert reason('rate', 5.0) == (True, '')
    assert node.scheduler.max_rate_hz == 5.0
    assert reason('prompt', '<grounding>A photo of') == (True, '')
    assert reason('max_new_tokens', 12) == (True, '')


def test_bad_image_topics_and_qos_are_refused(ros, engine):
    with pytest.raises(ValueError, match='distinct'):
        KosmosNode(engine=engine, parameter_overrides=[
            Parameter('image_topics', value=['a', 'a'])])
    with pytest.raises(ValueError, match='image_qos'):
        KosmosNode(engine=engine, parameter_overrides=[
            Parameter('image_qos', value='fast')])


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


# -- services -----------------------------------------------------------------

def call(h, kind, name, request, timeout=30.0):
    client = h.peer.create_client(kind, name)
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(request)
    assert wait_for(future.done, timeout)
    return future.result()


def test_ask_and_locate_while_captioning_runs(harness):
    from kosmos_ros_interfaces.srv import Ask, Locate
    h = harness()
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    pub = h.publisher('cam/image_raw')
    msg = image_msg(make_frame(240, 320), frame_id='front_cam', sec=99)
    assert h.publish_until(pub, msg, dets)
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            pub.publish(msg)
            time.sleep(0.02)
    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        before = len(dets)
        answer = call(h, Ask, '/kosmos/ask', Ask.Request(
            question='What is this object?', x1=10.0, y1=20.0, x2=200.0,
            y2=220.0, max_new_tokens=6))
        located = call(h, Locate, '/kosmos/locate',
                       Locate.Request(phrase='the red cup'))
        assert wait_for(lambda: len(dets) > before + 2)  # captions go on
    finally:
        stop.set()
        streamer.join()
    assert answer.success, answer.message
    assert answer.header.frame_id == 'front_cam'
    assert answer.header.stamp.sec == 99
    assert answer.detections.header == answer.header
    assert located.success, located.message
    assert located.header.frame_id == 'front_cam'
    assert located.detections.detections
    for det in located.detections.detections:
        assert det.results[0].hypothesis.class_id == 'the red cup'
        assert det.bbox.size_x > 0 and det.bbox.size_y > 0


def test_ask_with_an_explicit_image(harness):
    from kosmos_ros_interfaces.srv import Ask
    h = harness()
    image = image_msg(make_frame(100, 200), encoding='bgr8',
                      frame_id='given', sec=5)
    answer = call(h, Ask, '/kosmos/ask', Ask.Request(
        question='What is in the image?', image=image, max_new_tokens=4))
    assert answer.success, answer.message
    assert answer.header.frame_id == 'given'


@pytest.mark.parametrize('fields, reason', [
    ({'question': ''}, 'empty'),
    ({'question': 'x' * 501}, 'more than'),
    ({'x1': float('nan'), 'x2': 10.0, 'y2': 10.0}, 'NaN'),
    ({'x1': 50.0, 'x2': 10.0, 'y2': 10.0}, 'x2 > x1'),
    ({'x1': 500.0, 'y1': 500.0, 'x2': 600.0, 'y2': 600.0}, 'outside'),
    ({'camera': '/nope'}, 'unknown camera'),
    ({'max_new_tokens': 100000}, 'cap'),
    ({'history_questions': ['a?'], 'history_answers': []}, 'length'),
    ({'image': 'bad-encoding'}, 'unsupported encoding'),
])
def test_bad_ask_requests_fail_with_a_reason(harness, fields, reason):
    from kosmos_ros_interfaces.srv import Ask
    h = harness()
    pub = h.publisher('cam/image_raw')
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    assert h.publish_until(pub, image_msg(make_frame(240, 320)), dets)
    request = Ask.Request(question='What is this?')
    for key, value in fields.items():
        if value == 'bad-encoding':
            value = image_msg(make_frame(10, 10), encoding='32FC1')
        setattr(request, key, value)
    answer = call(h, Ask, '/kosmos/ask', request)
    assert not answer.success
    assert reason in answer.message
    # ...and the node still serves.
    ok = call(h, Ask, '/kosmos/ask', Ask.Request(question='What is this?',
                                                 max_new_tokens=2))
    assert ok.success, ok.message


def test_locate_refuses_markup_and_unknown_cameras(harness):
    from kosmos_ros_interfaces.srv import Locate
    h = harness()
    bad = call(h, Locate, '/kosmos/locate', Locate.Request(
        phrase='<phrase>x</phrase>'))
    assert not bad.success and 'plain text' in bad.message
    bad = call(h, Locate, '/kosmos/locate', Locate.Request(
        phrase='a cup', camera='other'))
    assert not bad.success and 'unknown camera' in bad.message


def test_call_before_any_frame_fails_clearly_and_fast(harness):
    from kosmos_ros_interfaces.srv import Ask
    h = harness()
    start = time.monotonic()
    answer = call(h, Ask, '/kosmos/ask', Ask.Request(question='What is it?'))
    assert not answer.success
    assert 'no frame received yet on %s/cam/image_raw' % h.ns in \
        answer.message
    assert time.monotonic() - start < 5.0


def test_question_about_a_captioned_frame_reuses_its_encoding(harness):
    from kosmos_ros_interfaces.srv import Ask
    h = harness()
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    msg = image_msg(make_frame(240, 320, seed=9))
    assert h.publish_until(h.publisher('cam/image_raw'), msg, dets)
    time.sleep(0.3)  # the last published frame is captioned, none newer
    request = Ask.Request(question='What is this?', x2=100.0, y2=100.0,
                          max_new_tokens=6)
    reused = call(h, Ask, '/kosmos/ask', request)
    assert reused.success, reused.message
    assert h.node.reused_encodings == 1
    request.image = msg  # the same frame, encoded afresh
    fresh = call(h, Ask, '/kosmos/ask', request)
    assert h.node.reused_encodings == 1
    assert fresh.answer == reused.answer


def test_ready_frames_of_several_cameras_are_batched(harness):
    h = harness(image_topics=['a/image_raw', 'b/image_raw'], max_batch=2,
                rate=1.0)
    sizes = []
    caption = h.node.engine.caption

    def recording(frames, *args, **kwargs):
        sizes.append(len(frames))
        return caption(frames, *args, **kwargs)
    h.node.engine.caption = recording
    try:
        got_a = h.listen('a/image_raw/kosmos/detections', Detection2DArray)
        got_b = h.listen('b/image_raw/kosmos/detections', Detection2DArray)
        pubs = [h.publisher('a/image_raw'), h.publisher('b/image_raw')]
        msg = image_msg(make_frame(60, 80))
        end = time.monotonic() + 20
        while (len(got_a) < 2 or len(got_b) < 2) and time.monotonic() < end:
            for pub in pubs:
                pub.publish(msg)
            time.sleep(0.05)
    finally:
        h.node.engine.caption = caption
    assert len(got_a) >= 2 and len(got_b) >= 2
    assert 2 in sizes  # both cameras in one batch (rate 1 Hz lets both wait)


def test_listeners_coming_and_going_under_a_flood_do_not_kill_the_node(
        harness):
    h = harness(rate=0.0)
    pub = h.publisher('cam/image_raw')
    msg = image_msg(make_frame(480, 640))  # big: a long take, a wide race
    topic = h.ns + '/cam/image_raw/kosmos/detections'
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            pub.publish(msg)
            time.sleep(0.001)
    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    camera = h.node.cameras[h.ns + '/cam/image_raw']
    try:
        for _ in range(12):  # subscribe, then unsubscribe, repeatedly
            got = []
            sub = h.peer.create_subscription(Detection2DArray, topic,
                                             got.append, 10)
            assert wait_for(lambda: got, 20)
            h.peer.destroy_subscription(sub)
            assert wait_for(lambda: camera.subscription is None, 5)
    finally:
        stop.set()
        flooder.join()
    assert h.thread.is_alive(), 'the executor died'


def test_behaviour_tree_example_locates_then_asks(harness):
    import importlib.util
    from pathlib import Path
    py_trees = pytest.importorskip('py_trees', reason='py_trees not installed')
    path = Path(__file__).resolve().parents[2] / 'examples' / \
        'door_check_tree.py'
    spec = importlib.util.spec_from_file_location('door_check_tree', path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    h = harness()
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    pub = h.publisher('cam/image_raw')
    msg = image_msg(make_frame(240, 320))
    assert h.publish_until(pub, msg, dets)
    tree, board = example.make_tree(h.peer, timeout=30.0)
    done = (py_trees.common.Status.SUCCESS, py_trees.common.Status.FAILURE)
    end = time.monotonic() + 60
    while tree.root.status not in done and time.monotonic() < end:
        pub.publish(msg)
        tree.tick()
        time.sleep(0.05)
    assert tree.root.status == py_trees.common.Status.SUCCESS, [
        c.feedback_message for c in tree.root.children]
    x1, y1, x2, y2 = board.box
    assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240
    assert isinstance(board.answer, str)
