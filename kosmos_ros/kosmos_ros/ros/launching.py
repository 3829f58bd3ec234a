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
What the launch files share: arguments, typed overrides, the node action.

Every parameter is a launch argument whose default, as ``--show-args``
shows it, is the node's own (``config``): declared once. An argument
overrides the parameters file only when it is given (on the command line,
or by an including launch file with another value). ROS 2 launch ignores an
argument nobody declares; these launch files refuse one given on the
command line, naming the closest argument.
"""

import difflib
import os
import sys

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import LifecycleNode
import yaml

from .config import LAUNCH, PARAMETERS, yaml_value

NOT_GIVEN = ''


def declare_arguments(skip=()):
    """Declare params_file, use_sim_time and the node's launch arguments."""
    return [
        DeclareLaunchArgument(
            'params_file', description='YAML file of kosmos_node parameters',
            default_value=os.path.join(get_package_share_directory(
                'kosmos_ros'), 'config', 'kosmos.yaml')),
        DeclareLaunchArgument(
            'use_sim_time', default_value=NOT_GIVEN,
            description='Use /clock (true/false); not given: the file decides'),
        *[DeclareLaunchArgument(
            name, default_value=yaml_value(PARAMETERS[name].default),
            description='%s%s Not given: the file decides.' % (
                PARAMETERS[name].description,
                '' if PARAMETERS[name].runtime else ' (start-up only)'))
          for name in LAUNCH if name not in skip]]


def declare_security_arguments():
    """Declare the SROS2 (DDS-Security) arguments: off unless security:=true."""
    return [
        DeclareLaunchArgument(
            'security', default_value='false', choices=['true', 'false'],
            description='Run the node under SROS2 (DDS-Security): '
            'authenticated, encrypted, and limited to what its enclave in '
            'the keystore permits (share/kosmos_ros/security/policy.xml)'),
        DeclareLaunchArgument(
            'keystore', default_value=EnvironmentVariable(
                'ROS_SECURITY_KEYSTORE', default_value=''),
            description='SROS2 keystore folder, made with ros2 security '
            'generate_artifacts -k DIR -p .../security/policy.xml '
            '(default: $ROS_SECURITY_KEYSTORE)'),
        DeclareLaunchArgument(
            'enclave', default_value='/kosmos_ros/kosmos',
            description="The node's enclave in the keystore"),
        DeclareLaunchArgument(
            'security_strategy', default_value='Enforce',
            choices=['Enforce', 'Permissive'],
            description='Enforce: no keys, no start; Permissive: run '
            'unsecured when the enclave has no keys (not for a robot)'),
    ]


def security_settings(context):
    """
    Return (ros_arguments, environment) of the node for security:=true.

    Refuses, naming the command that fixes it, a keystore or an enclave
    that is missing, rather than starting a node no one can reach.
    """
    if LaunchConfiguration('security').perform(context) != 'true':
        return [], {}
    keystore = os.path.expanduser(
        LaunchConfiguration('keystore').perform(context))
    enclave = LaunchConfiguration('enclave').perform(context)
    policy = os.path.join(get_package_share_directory('kosmos_ros'),
                          'security', 'policy.xml')
    keys = os.path.join(keystore, 'enclaves', enclave.strip('/'))
    if not keystore or not all(os.path.isfile(os.path.join(keys, name))
                               for name in ('cert.pem', 'key.pem',
                                            'permissions.p7s')):
        raise RuntimeError(
            'security:=true: no enclave %s in keystore %r; make them with: '
            'ros2 security generate_artifacts -k KEYSTORE -p %s' % (
                enclave, keystore, policy))
    return ['--enclave', enclave], {
        'ROS_SECURITY_ENABLE': 'true',
        'ROS_SECURITY_STRATEGY': LaunchConfiguration(
            'security_strategy').perform(context),
        'ROS_SECURITY_KEYSTORE': os.path.abspath(keystore)}


def _command_line(context):
    """Return {name: text} given to ``ros2 launch`` for this launch file."""
    path = context.locals.current_launch_file_path if hasattr(
        context.locals, 'current_launch_file_path') else None
    named = {os.path.basename(arg) for arg in sys.argv}
    if path is None or os.path.basename(path) not in named:
        return {}  # included by another launch file: its arguments
    return dict(arg.split(':=', 1) for arg in context.argv if ':=' in arg)


def given_overrides(context, skip=()):
    """
    Return the parameters of the arguments given, typed.

    Given: on the command line, or set to a value other than the node's
    default (by an including launch file); otherwise the file decides.
    """
    command_line = _command_line(context)
    overrides = {}
    for name in LAUNCH + ('use_sim_time',):
        if name in skip:
            continue
        text = LaunchConfiguration(name).perform(context)
        if text == NOT_GIVEN:
            continue
        value = parse_argument(name, text)
        if name in command_line or name not in PARAMETERS or \
                value != PARAMETERS[name].default:
            overrides[name] = value
    return overrides


def refuse_unknown(context, description):
    """Fail the launch on a command-line argument ``description`` lacks."""
    declared = [entity.name for entity in description.entities
                if isinstance(entity, DeclareLaunchArgument)]
    for name in _command_line(context):
        if name not in declared and not name.startswith('launch-'):
            close = difflib.get_close_matches(name, declared, n=1)
            raise RuntimeError(
                'unknown launch argument %r%s (ros2 launch ... --show-args '
                'lists them)' % (name, ": did you mean '%s'?" % close[0]
                                 if close else ''))


def parse_argument(name, text):
    """Read a launch argument's text as its parameter's type."""
    kind = PARAMETERS[name].kind if name in PARAMETERS else bool
    value = text if kind is str else yaml.safe_load(text)
    return float(value) if kind is float else value


def kosmos_node(name, namespace, overrides, security=((), None)):
    """
    Make the lifecycle node action: the file, then the overrides.

    ``security``: what ``security_settings`` returns.
    """
    ros_arguments, environment = security
    return LifecycleNode(
        package='kosmos_ros', executable='kosmos_node', name=name,
        namespace=namespace, output='screen', emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'), overrides],
        ros_arguments=list(ros_arguments) or None,
        additional_env=environment or None)


def assign_cameras(cameras, devices):
    """
    Spread cameras over devices, round-robin: [(index, device, cameras)].

    Camera k goes to device k mod len(devices), so the split is predictable
    from the two lists alone; a device left without a camera gets no node.
    """
    if not cameras:
        raise ValueError('cameras must list at least one image topic')
    if not devices:
        raise ValueError('devices must list at least one device')
    return [(k, device, list(cameras[k::len(devices)]))
            for k, device in enumerate(devices) if cameras[k::len(devices)]]
