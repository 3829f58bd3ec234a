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
"""The rclpy side of the node tests: a harness and message helpers."""

import threading
import time

from conftest import BOX_PROMPT
import cv2
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from kosmos_ros.ros.node import KosmosNode  # noqa: I100


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


class Harness:
    """A KosmosNode on the tiny engine, a peer node, one executor thread."""

    count = 0

    def __init__(self, engine, cli_args=None, start=True, **params):
        Harness.count += 1
        self.ns = '/t%d' % Harness.count
        topics = params.pop('image_topics', ['cam/image_raw'])
        depth = params.pop('depth_topics', None)
        values = {'image_topics': ['%s/%s' % (self.ns, t) for t in topics],
                  'prompt': BOX_PROMPT, 'rate': 0.0, 'max_new_tokens': 6}
        if depth is not None:  # namespaced like the image topics
            values['depth_topics'] = ['%s/%s' % (self.ns, t) if t else ''
                                      for t in depth]
        values.update(params)
        self.node = KosmosNode(engine=engine, cli_args=cli_args,
                               parameter_overrides=[
                                   Parameter(k, value=v)
                                   for k, v in values.items()])
        if start:
            assert self.node.start(), 'configure + activate'
        self.peer = rclpy.create_node('peer%d' % Harness.count)
        self.executor = MultiThreadedExecutor(num_threads=4)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        self.received = {}

    def listen(self, topic, kind):
        box = self.received.setdefault(topic, [])
        self.peer.create_subscription(kind, self.ns + '/' + topic,
                                      box.append, 10)
        return box

    def publisher(self, topic, kind=Image, qos=qos_profile_sensor_data):
        return self.peer.create_publisher(kind, self.ns + '/' + topic, qos)

    def camera(self, topic='cam/image_raw'):
        return self.node.cameras[self.ns + '/' + topic]

    def scheduler(self):
        return self.node.worker.scheduler

    def publish_until(self, pub, msg, box, count=1, timeout=20.0):
        end = time.monotonic() + timeout
        while len(box) < count and time.monotonic() < end:
            pub.publish(msg)
            time.sleep(0.05)
        return len(box) >= count

    def _spin(self):
        # What executor.spin() does, until close() says stop: an exception
        # out of a callback still ends the thread (a test checks for that).
        while not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        self.node.shutdown()
        # The spin thread ends before the executor shuts down: shutdown()
        # while spin() builds a wait set raised InvalidHandle or 'NoneType
        # has no attribute handle' in that thread (Humble and Jazzy, about
        # one suite run in three, as a pytest warning).
        self.stop.set()
        self.thread.join(5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()


def call(h, kind, name, request, timeout=30.0):
    client = h.peer.create_client(kind, name)
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(request)
    assert wait_for(future.done, timeout)
    return future.result()


class Streamer:
    """Publish one message every ``period`` seconds until stopped."""

    def __init__(self, pub, msg, period=0.01):
        self._stop = threading.Event()

        def run():
            while not self._stop.is_set():
                pub.publish(msg)
                time.sleep(period)
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()


def param_set_latencies(h, finished, most=20):
    """
    Set ``rate`` through /kosmos/set_parameters until ``finished()``.

    Returns each call's round trip in seconds (at most ``most`` calls), what
    a user's ``ros2 param set`` waits for besides its own start-up.
    """
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    params = h.peer.create_client(SetParameters, '/kosmos/set_parameters')
    assert params.wait_for_service(timeout_sec=10.0)
    latencies = []
    while not finished() and len(latencies) < most:
        request = SetParameters.Request(parameters=[ParameterMsg(
            name='rate', value=ParameterValue(
                type=ParameterType.PARAMETER_DOUBLE,
                double_value=100.0 + len(latencies)))])
        begin = time.monotonic()
        answer = params.call_async(request)
        assert wait_for(answer.done, 5)
        latencies.append(time.monotonic() - begin)
        assert answer.result().results[0].successful
    return latencies
