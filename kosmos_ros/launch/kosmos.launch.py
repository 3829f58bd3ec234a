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
Launch kosmos_node (a lifecycle node, brought to active by default).

    ros2 launch kosmos_ros kosmos.launch.py image_topics:="['/front/image_raw']"

Parameters come from config/kosmos.yaml (or params_file:=...). A launch
argument overrides the file only when given on the command line; its
default, shown by --show-args, is the node's own (kosmos_ros/config.py).
"""

import os

from ament_index_python.packages import get_package_share_directory
from kosmos_ros.config import LAUNCH, PARAMETERS, yaml_value
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
import yaml

NOT_GIVEN = ''


def _given_overrides(context):
    """Parameters of the arguments given on the command line, typed."""
    overrides = {}
    for name in LAUNCH + ('use_sim_time',):
        text = LaunchConfiguration(name).perform(context)
        if text == NOT_GIVEN:
            continue
        kind = PARAMETERS[name].kind if name in PARAMETERS else bool
        value = text if kind is str else yaml.safe_load(text)
        overrides[name] = float(value) if kind is float else value
    return overrides


def _node(context):
    return [LifecycleNode(
        package='kosmos_ros', executable='kosmos_node', name='kosmos',
        namespace=LaunchConfiguration('namespace'), output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'),
                    _given_overrides(context)])]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file', description='YAML file of kosmos_node parameters',
            default_value=os.path.join(get_package_share_directory(
                'kosmos_ros'), 'config', 'kosmos.yaml')),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node'),
        DeclareLaunchArgument(
            'use_sim_time', default_value=NOT_GIVEN,
            description='Use /clock (true/false); not given: the file decides'),
        *[DeclareLaunchArgument(
            name, default_value=NOT_GIVEN,
            description='%s Not given: the file decides (node default: %s).'
            % (PARAMETERS[name].description,
               yaml_value(PARAMETERS[name].default)))
          for name in LAUNCH],
        OpaqueFunction(function=_node),
    ])
