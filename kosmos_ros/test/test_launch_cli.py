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
kosmos.launch.py from the ``ros2 launch`` command line, as a user types it.

Every parameter is an argument whose shown default is the node's own; one
given on the command line overrides the parameters file, even when it
equals the node's default; a misspelt one fails the launch with the
closest name. Needs ROS 2 with kosmos_ros built into the ament index.
"""

import subprocess
import time

from conftest import require_installed, require_ros, stop_group
import pytest

require_ros('launch_ros')
require_installed()
from rcl_interfaces.srv import GetParameters  # noqa: E402, I100
import rclpy  # noqa: E402

from kosmos_ros.ros.config import PARAMETERS, yaml_value  # noqa: E402, I100

LAUNCH = ['ros2', 'launch', 'kosmos_ros', 'kosmos.launch.py']


def _run(*args, timeout=60):
    return subprocess.run(LAUNCH + list(args), capture_output=True,
                          text=True, timeout=timeout)


def test_show_args_lists_every_parameter_with_the_node_default():
    result = _run('--show-args')
    assert result.returncode == 0, result.stderr
    for name, param in PARAMETERS.items():
        shown = "'%s':" % name
        assert shown in result.stdout, name
        block = result.stdout[result.stdout.index(shown):]
        block = block[:block.index('(default:')
                      + len(yaml_value(param.default)) + 30]
        assert "(default: '%s')" % yaml_value(param.default) in block, name


def test_a_misspelt_argument_fails_the_launch_naming_the_closest():
    started = time.monotonic()
    result = _run('lazzy:=false', 'autostart:=false')
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    text = result.stdout + result.stderr
    assert "unknown launch argument 'lazzy': did you mean 'lazy'?" in text
    assert 'process started' not in text  # no node was started


def test_security_without_its_keys_fails_the_launch_saying_how(tmp_path):
    result = _run('security:=true', 'keystore:=%s' % (tmp_path / 'none'))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert 'no enclave /kosmos_ros/kosmos in keystore' in text
    assert 'ros2 security generate_artifacts -k KEYSTORE -p ' in text
    assert 'security/policy.xml' in text
    assert 'process started' not in text  # no unsecured node either


@pytest.fixture
def launched(ros, tmp_path):
    params = tmp_path / 'user.yaml'
    # The file says rate 3.5; the command line gives the node's default 2.0.
    params.write_text('/**:\n  ros__parameters:\n    rate: 3.5\n'
                      '    max_batch: 4\n')
    proc = subprocess.Popen(
        LAUNCH + ['namespace:=cli_launch', 'params_file:=%s' % params,
                  'autostart:=false', 'lazy:=false', 'rate:=2.0'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    node = rclpy.create_node('launch_cli_probe')
    try:
        yield node
    finally:
        node.destroy_node()
        stop_group(proc)


def test_arguments_given_on_the_command_line_reach_the_node(launched):
    client = launched.create_client(GetParameters,
                                    '/cli_launch/kosmos/get_parameters')
    assert client.wait_for_service(timeout_sec=60)
    names = ['lazy', 'rate', 'max_batch', 'autostart']
    future = client.call_async(GetParameters.Request(names=names))
    rclpy.spin_until_future_complete(launched, future, timeout_sec=20)
    got = dict(zip(names, future.result().values))
    assert got['lazy'].bool_value is False  # default true, given false
    assert got['rate'].double_value == 2.0  # given: beats the file's 3.5
    assert got['max_batch'].integer_value == 4  # not given: the file's
    assert got['autostart'].bool_value is False
