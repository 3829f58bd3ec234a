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
kosmos_scale.launch.py (launch_testing): three cameras over two CPU nodes.

Each camera's detections arrive whichever node serves it; each node answers
Locate for its own cameras under its predictable name and refuses the
other's. Runs the installed launch file on a tiny random checkpoint.
"""

import os
import tempfile
import time
import unittest

from conftest import BOX_PROMPT, make_frame, require_installed, require_ros
import pytest

require_ros('launch_testing', 'torch')
SHARE = require_installed()
import launch_testing  # noqa: E402, I100

from launch import LaunchDescription  # noqa: E402, I100
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import \
    PythonLaunchDescriptionSource  # noqa: E402
import rclpy  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from kosmos_ros.model.tiny import make_tiny_model  # noqa: E402, I100
from kosmos_ros.ros.launching import assign_cameras  # noqa: E402

CAMERAS = ['/scale/cam%d/image_raw' % k for k in range(3)]
YAML = """\
/**:
  ros__parameters:
    max_new_tokens: 4
    rate: 0.0
    prompt: "%s"
""" % BOX_PROMPT


@pytest.mark.launch_test
def generate_test_description():
    folder = tempfile.mkdtemp()
    model = make_tiny_model(os.path.join(folder, 'tiny'))
    params = os.path.join(folder, 'scale.yaml')
    with open(params, 'w') as out:
        out.write(YAML)
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(
            SHARE, 'launch', 'kosmos_scale.launch.py')),
        launch_arguments={
            'params_file': params, 'model': str(model),
            'cameras': repr(CAMERAS), 'devices': "['cpu', 'cpu']",
            'namespace': 'lab'}.items())
    return LaunchDescription([include,
                              launch_testing.actions.ReadyToTest()])


def image(frame):
    msg = Image(height=frame.shape[0], width=frame.shape[1],
                encoding='rgb8', step=frame.shape[1] * 3,
                data=frame.tobytes())
    msg.header.frame_id = 'cam'
    return msg


class TestScaleOut(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('scale_probe')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_round_robin_split(self):
        self.assertEqual(assign_cameras(CAMERAS, ['cpu', 'cpu']), [
            (0, 'cpu', [CAMERAS[0], CAMERAS[2]]), (1, 'cpu', [CAMERAS[1]])])
        self.assertEqual(assign_cameras(CAMERAS[:1], ['a', 'b']),
                         [(0, 'a', CAMERAS[:1])])

    def test_every_camera_is_served_and_each_node_answers_for_its_own(self):
        from kosmos_ros_interfaces.srv import Locate
        got = {c: [] for c in CAMERAS}
        for camera in CAMERAS:
            self.node.create_subscription(
                Detection2DArray, camera + '/kosmos/detections',
                got[camera].append, 10)
        pubs = [self.node.create_publisher(Image, c, qos_profile_sensor_data)
                for c in CAMERAS]
        msg = image(make_frame(120, 160))
        deadline = time.monotonic() + 120
        while not all(got.values()) and time.monotonic() < deadline:
            for pub in pubs:
                pub.publish(msg)
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.assertTrue(all(got.values()), {c: len(v) for c, v in
                                            got.items()})

        def locate(node, camera):
            client = self.node.create_client(Locate,
                                             '/lab/%s/locate' % node)
            self.assertTrue(client.wait_for_service(timeout_sec=20))
            future = client.call_async(Locate.Request(phrase='a red cup',
                                                      camera=camera))
            end = time.monotonic() + 60
            while not future.done() and time.monotonic() < end:
                for pub in pubs:
                    pub.publish(msg)
                rclpy.spin_once(self.node, timeout_sec=0.1)
            self.assertTrue(future.done())
            return future.result()
        for node, camera in (('kosmos_0', CAMERAS[0]),
                             ('kosmos_0', CAMERAS[2]),
                             ('kosmos_1', CAMERAS[1])):
            answer = locate(node, camera)
            self.assertTrue(answer.success, (node, camera, answer.message))
        answer = locate('kosmos_1', CAMERAS[0])
        self.assertFalse(answer.success)
        self.assertIn('unknown camera', answer.message)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(
            proc_info, allowable_exit_codes=[0, -2, -15])
