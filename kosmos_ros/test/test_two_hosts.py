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
Two hosts: network namespaces joined by a veth pair, DDS discovery across.

Host A (the robot) runs kosmos_scale.launch.py in namespace host_a and a
camera; host B (the planner) only sees A through the veth. B's probe must
receive A's detections and get answers from A's Locate service. Needs root
(``ip netns``); skipped, saying so, where namespaces cannot be made.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap

from conftest import BOX_PROMPT, require_installed, require_ros
import pytest

require_ros()
require_installed()

pytestmark = pytest.mark.ros
TAG = str(os.getpid() % 100000)
HOSTS = {'a': ('kos_a' + TAG, 'kva' + TAG, '10.211.0.1/24'),
         'b': ('kos_b' + TAG, 'kvb' + TAG, '10.211.0.2/24')}
CAMERA = '/host_a_cam/image_raw'

CAMERA_SCRIPT = textwrap.dedent("""
    import time
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node('camera_a')
    pub = node.create_publisher(Image, %r, qos_profile_sensor_data)
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    msg = Image(height=120, width=160, encoding='rgb8', step=480,
                data=frame.tobytes())
    msg.header.frame_id = 'camera_a'
    while rclpy.ok():
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        time.sleep(0.1)
""" % CAMERA)

PROBE_SCRIPT = textwrap.dedent("""
    import sys, time
    import rclpy
    from vision_msgs.msg import Detection2DArray
    from kosmos_ros_interfaces.srv import Locate
    rclpy.init()
    node = rclpy.create_node('planner_b')
    got = []
    node.create_subscription(Detection2DArray, %r + '/kosmos/detections',
                             got.append, 10)
    end = time.monotonic() + 90
    while not got and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.2)
    print('DETECTIONS', len(got), got[0].header.frame_id if got else '',
          flush=True)
    client = node.create_client(Locate, '/host_a/kosmos_0/locate')
    if not client.wait_for_service(timeout_sec=30):
        print('NO SERVICE', flush=True)
        sys.exit(1)
    future = client.call_async(Locate.Request(phrase='a red cup'))
    end = time.monotonic() + 60
    while not future.done() and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.2)
    answer = future.result() if future.done() else None
    print('LOCATE', answer is not None and answer.success,
          answer.message if answer else 'no answer', flush=True)
    sys.exit(0 if got and answer is not None and answer.success else 1)
""" % CAMERA)


def ip(*args):
    return subprocess.run(['ip', *args], capture_output=True, text=True)


@pytest.fixture
def hosts():
    if os.geteuid() != 0 or shutil.which('ip') is None:
        pytest.skip('network namespaces need root and iproute2')
    made = []
    try:
        for ns, _, _ in HOSTS.values():
            if ip('netns', 'add', ns).returncode:
                pytest.skip('cannot create network namespaces here')
            made.append(ns)
        (ns_a, veth_a, addr_a), (ns_b, veth_b, addr_b) = HOSTS.values()
        steps = [
            ('link', 'add', veth_a, 'type', 'veth', 'peer', 'name', veth_b),
            ('link', 'set', veth_a, 'netns', ns_a),
            ('link', 'set', veth_b, 'netns', ns_b)]
        for ns, veth, addr in HOSTS.values():
            steps += [('-n', ns, 'addr', 'add', addr, 'dev', veth),
                      ('-n', ns, 'link', 'set', veth, 'up'),
                      ('-n', ns, 'link', 'set', 'lo', 'up'),
                      ('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', veth)]
        for step in steps:
            done = ip(*step)
            assert done.returncode == 0, (step, done.stderr)
        yield HOSTS
    finally:
        for ns in made:
            ip('netns', 'del', ns)


def host_env(veth):
    env = dict(os.environ, ROS_DOMAIN_ID='73', PYTHONUNBUFFERED='1')
    env.pop('ROS_LOCALHOST_ONLY', None)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SUBNET'  # Jazzy; Humble ignores
    env['CYCLONEDDS_URI'] = (
        '<CycloneDDS><Domain><General><Interfaces><NetworkInterface name="%s"'
        '/></Interfaces></General></Domain></CycloneDDS>' % veth)
    return env


def start(ns, veth, args, log):
    return subprocess.Popen(['ip', 'netns', 'exec', ns, *args],
                            env=host_env(veth), stdout=log,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_a_planner_on_another_host_gets_detections_and_answers(
        hosts, tiny_model_dir, tmp_path):
    (ns_a, veth_a, _), (ns_b, veth_b, _) = hosts.values()
    params = tmp_path / 'p.yaml'
    params.write_text('/**:\n  ros__parameters:\n    max_new_tokens: 4\n'
                      '    rate: 0.0\n    prompt: "%s"\n' % BOX_PROMPT)
    camera, probe = tmp_path / 'camera.py', tmp_path / 'probe.py'
    camera.write_text(CAMERA_SCRIPT)
    probe.write_text(PROBE_SCRIPT)
    logs = {name: open(tmp_path / (name + '.log'), 'w')
            for name in ('launch', 'camera', 'probe')}
    procs = []
    try:
        procs.append(start(ns_a, veth_a, [
            'ros2', 'launch', 'kosmos_ros', 'kosmos_scale.launch.py',
            'namespace:=host_a', "cameras:=['%s']" % CAMERA,
            "devices:=['cpu']", 'model:=%s' % tiny_model_dir,
            'params_file:=%s' % params], logs['launch']))
        procs.append(start(ns_a, veth_a, [sys.executable, str(camera)],
                           logs['camera']))
        planner = start(ns_b, veth_b, [sys.executable, str(probe)],
                        logs['probe'])
        code = planner.wait(timeout=200)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for log in logs.values():
            log.close()
    text = {name: (tmp_path / (name + '.log')).read_text() for name in logs}
    print(text['probe'])
    assert code == 0, text
    assert 'DETECTIONS' in text['probe'] and 'camera_a' in text['probe']
    assert 'LOCATE True' in text['probe'], text
    assert '/host_a/kosmos_0 on cpu' in text['launch'], text['launch']
