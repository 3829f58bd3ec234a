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
kosmos.launch.py (launch_testing): the YAML file rules, given args override.

Launches the installed launch file with a user's params_file in a namespace
and two arguments given; then reads the node's parameters back. Needs
ROS 2 with kosmos_ros built into the ament index (tools/test.sh does it).
"""

import os
import tempfile
import time
import unittest

from conftest import require_installed, require_ros
import pytest

require_ros('launch_testing')
SHARE = require_installed()
import launch_testing  # noqa: E402, I100

from launch import LaunchDescription  # noqa: E402, I100
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import \
    PythonLaunchDescriptionSource  # noqa: E402
import rclpy  # noqa: E402

YAML = """\
/**:
  ros__parameters:
    autostart: false
    model: /from/the/yaml/file
    rate: 3.5
    prompt: "<grounding>From the file"
    max_batch: 2
    mode: queries
"""


@pytest.mark.launch_test
def generate_test_description():
    params = os.path.join(tempfile.mkdtemp(), 'user.yaml')
    with open(params, 'w') as out:
        out.write(YAML)
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(
            SHARE, 'launch', 'kosmos.launch.py')),
        launch_arguments={'params_file': params, 'namespace': 'robot7',
                          'max_batch': '3',
                          'queries': "['the red cup', 'a door']"}.items())
    return LaunchDescription([include,
                              launch_testing.actions.ReadyToTest()])


class TestLaunchParameters(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('launch_probe')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _call(self, client, request, timeout=20.0):
        self.assertTrue(client.wait_for_service(timeout_sec=timeout))
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future,
                                         timeout_sec=timeout)
        self.assertTrue(future.done())
        return future.result()

    def test_file_values_stand_and_only_the_given_argument_overrides(self):
        from rcl_interfaces.srv import GetParameters
        client = self.node.create_client(GetParameters,
                                         '/robot7/kosmos/get_parameters')
        names = ['model', 'rate', 'prompt', 'max_batch', 'autostart',
                 'image_qos', 'mode', 'queries']
        values = self._call(client, GetParameters.Request(names=names))
        got = dict(zip(names, values.values))
        # From the user's file: the launch file's own defaults did not win.
        self.assertEqual(got['model'].string_value, '/from/the/yaml/file')
        self.assertEqual(got['rate'].double_value, 3.5)
        self.assertEqual(got['prompt'].string_value,
                         '<grounding>From the file')
        self.assertFalse(got['autostart'].bool_value)
        self.assertEqual(got['mode'].string_value, 'queries')
        # Given on the command line: overrides the file.
        self.assertEqual(got['max_batch'].integer_value, 3)
        self.assertEqual(list(got['queries'].string_array_value),
                         ['the red cup', 'a door'])
        # In neither: the node's default.
        self.assertEqual(got['image_qos'].string_value, 'auto')

    def test_autostart_false_leaves_the_node_unconfigured(self):
        from lifecycle_msgs.srv import GetState
        client = self.node.create_client(GetState,
                                         '/robot7/kosmos/get_state')
        deadline = time.monotonic() + 20
        state = self._call(client, GetState.Request())
        while state.current_state.label != 'unconfigured' and \
                time.monotonic() < deadline:
            time.sleep(0.2)
            state = self._call(client, GetState.Request())
        self.assertEqual(state.current_state.label, 'unconfigured')


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(
            proc_info, allowable_exit_codes=[0, -2, -15])
