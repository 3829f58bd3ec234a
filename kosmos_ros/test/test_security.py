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
SROS2: the node launched with security:=true keeps strangers out.

A keystore made from share/kosmos_ros/security/policy.xml, the node started
by ``ros2 launch ... security:=true`` (Enforce), and peers, each a process
with its own identity (secure_peer.py): the policy's camera and client get
detections and an Ask answer; a process without keys, one with keys from
another keystore (a stranger's CA) and the policy's client trying what its
role may not (publish frames, set parameters) get nothing the node accepts.
Needs ROS 2 with sros2 and CycloneDDS's security plugins, and kosmos_ros
built into the ament index.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from conftest import BOX_PROMPT, require_installed, require_ros, stop_group
import pytest

require_ros('sros2')
SHARE = require_installed()

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = '/sec/kosmos'
CAMERA = '/sec/cam/image_raw'
DOMAIN = str(60 + os.getpid() % 40)  # not the other tests' domain


def _env(keystore=None):
    """Return the environment of a process with these keys (None: none)."""
    env = dict(os.environ, ROS_DOMAIN_ID=DOMAIN)
    for name in ('ROS_SECURITY_ENABLE', 'ROS_SECURITY_STRATEGY',
                 'ROS_SECURITY_KEYSTORE'):
        env.pop(name, None)
    if keystore is not None:
        env.update(ROS_SECURITY_ENABLE='true',
                   ROS_SECURITY_STRATEGY='Enforce',
                   ROS_SECURITY_KEYSTORE=str(keystore))
    return env


def _sros2(*args, env):
    result = subprocess.run(['ros2', 'security', *args], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope='module')
def secured(tmp_path_factory, tiny_model_dir):
    """Start the node under Enforce; yield (our keystore, a stranger's, log)."""
    if not os.environ.get('RMW_IMPLEMENTATION', 'rmw_cyclonedds_cpp') \
            .startswith('rmw_cyclonedds'):
        pytest.skip('the policy is tested with CycloneDDS')
    if shutil.which('ros2') is None:
        pytest.skip('no ros2 command')
    root = tmp_path_factory.mktemp('sros2')
    ours, stranger = root / 'keystore', root / 'stranger'
    env = _env()
    _sros2('generate_artifacts', '-k', str(ours), '-p',
           os.path.join(SHARE, 'security', 'policy.xml'), env=env)
    # Another keystore (another CA) with an enclave of the same name.
    _sros2('create_keystore', str(stranger), env=env)
    _sros2('create_enclave', str(stranger), '/kosmos_ros/client', env=env)
    log = open(root / 'node.log', 'w')
    node = subprocess.Popen(
        ['ros2', 'launch', 'kosmos_ros', 'kosmos.launch.py',
         'security:=true', 'keystore:=%s' % ours, 'namespace:=sec',
         'model:=%s' % tiny_model_dir, 'device:=cpu',
         'image_topics:=[%s]' % CAMERA, 'prompt:=%s' % BOX_PROMPT,
         'max_new_tokens:=8', 'rate:=5.0', 'lazy:=false'],
        env=_env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        yield ours, stranger, root / 'node.log'
    finally:
        stop_group(node)
        log.close()


def _peer(name, keystore, enclave, *args, background=False):
    """Run secure_peer.py as ``name`` with these keys; its JSON lines."""
    command = [sys.executable, os.path.join(HERE, 'secure_peer.py'),
               '--node', NODE, '--camera', CAMERA, '--name', name, *args]
    if enclave is not None:
        command += ['--ros-args', '--enclave', enclave]
    env = _env(keystore)
    if background:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    result = subprocess.run(command, env=env, capture_output=True,
                            text=True, timeout=120)
    return _lines(result.stdout + result.stderr)


def _lines(text):
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def _get(lines, key):
    return [line[key] for line in lines if key in line]


def test_the_policy_lets_its_roles_in_and_keeps_strangers_out(secured):
    ours, stranger, node_log = secured
    # The policy's client listens throughout: every detection it hears
    # names the frame_id (the peer) whose frame the node accepted.
    listener = _peer('listener', ours, '/kosmos_ros/client', '--listen',
                     '75', background=True)
    try:
        # Strangers first, while no allowed camera publishes: any frame
        # of theirs the node took would come back as a detection.
        no_keys = _peer('nokeys', None, None, '--publish', '6', '--ask',
                        '--set-parameter', '--wait', '4')
        foreign = _peer('stranger', stranger, '/kosmos_ros/client',
                        '--publish', '6', '--ask', '--set-parameter',
                        '--wait', '4')
        # The policy's client, doing what its role may not.
        overreach = _peer('client', ours, '/kosmos_ros/client', '--publish',
                          '6', '--set-parameter', '--wait', '8')
        # The policy's camera and client: frames in, detections and an Ask
        # answer out; the operator may set a parameter.
        camera = _peer('camera', ours, '/kosmos_ros/camera', '--publish',
                       '12', background=True)
        time.sleep(6)
        asker = _peer('asker', ours, '/kosmos_ros/client', '--ask',
                      '--wait', '30')
        operator = _peer('operator', ours, '/kosmos_ros/operator',
                         '--set-parameter', '--wait', '30')
        camera.wait(timeout=60)
    finally:
        listener.send_signal(signal.SIGINT)
        out, _ = listener.communicate(timeout=30)
    heard = _get(_lines(out), 'detection')
    with open(node_log) as log:
        node_text = log.read()
    assert 'camera' in heard, 'the allowed camera was served:\n' + node_text
    assert _get(asker, 'ask') == ['answered: ok'], asker
    assert _get(operator, 'set_parameter') == ['answered: ok'], operator
    for name, lines in (('nokeys', no_keys), ('stranger', foreign)):
        assert name not in heard, '%s got a frame in' % name
        assert _get(lines, 'ask') == ['unreachable'], lines
        assert _get(lines, 'set_parameter') == ['unreachable'], lines
    assert 'client' not in heard
    assert _get(overreach, 'set_parameter') != ['answered: ok'], overreach
    print('\nheard: %s; no keys: %s; stranger: %s; client overreach: %s'
          % ({n: heard.count(n) for n in set(heard)}, no_keys[1:], foreign[1:],
             overreach[1:]))
