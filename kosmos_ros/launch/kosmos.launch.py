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

Parameters come from config/kosmos.yaml (or params_file:=...). Every
parameter is also a launch argument; one overrides the file only when given,
and its default, shown by --show-args, is the node's own
(kosmos_ros/ros/config.py). An argument no one declares fails the launch.
security:=true keystore:=DIR runs it under SROS2 in its enclave
(doc/security.md).
"""

from kosmos_ros.ros.launching import (declare_arguments,
                                      declare_security_arguments,
                                      given_overrides, kosmos_node,
                                      refuse_unknown, security_settings)
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration


def _node(context, description):
    refuse_unknown(context, description)
    return [kosmos_node('kosmos', LaunchConfiguration('namespace'),
                        given_overrides(context), security_settings(context))]


def generate_launch_description():
    description = LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node'),
        *declare_arguments(),
        *declare_security_arguments(),
    ])
    description.add_action(OpaqueFunction(function=_node,
                                          args=[description]))
    return description
