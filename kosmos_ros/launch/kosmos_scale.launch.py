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
Spread cameras over devices: one kosmos_node per device, each in its place.

    ros2 launch kosmos_ros kosmos_scale.launch.py \
      cameras:="['/cam0/image_raw', '/cam1/image_raw', '/cam2/image_raw']" \
      devices:="['cuda:0', 'cuda:1']"

Camera k goes to device k mod len(devices) (round-robin); the node of
device i is named ``kosmos_<i>`` in ``namespace``, so its services are
``<namespace>/kosmos_<i>/ask`` (``/kosmos_0/ask`` by default). Outputs go
next to each camera's topic whichever node serves it. For several hosts,
run one launch per host in the same ROS domain with a namespace per host
(``namespace:=robot_a``): DDS discovery joins them. Every other argument is
kosmos.launch.py's and applies to every node.
"""

from kosmos_ros.ros.launching import (assign_cameras, declare_arguments,
                                      declare_security_arguments,
                                      given_overrides, kosmos_node,
                                      refuse_unknown, security_settings)
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
import yaml

PER_NODE = ('image_topics', 'depth_topics')  # split by the launch, not given


def _nodes(context, description):
    refuse_unknown(context, description)
    cameras = yaml.safe_load(LaunchConfiguration('cameras').perform(context))
    devices = yaml.safe_load(LaunchConfiguration('devices').perform(context))
    namespace = LaunchConfiguration('namespace').perform(context)
    depth = LaunchConfiguration('depth_topics').perform(context)
    depth = yaml.safe_load(depth) if depth else None
    if depth is not None and len(depth) != len(cameras or []):
        raise ValueError('depth_topics must list one entry per camera')
    common = given_overrides(context, skip=PER_NODE + ('device',))
    security = security_settings(context)  # every node in the one enclave
    actions = []
    for index, device, share in assign_cameras(cameras or [], devices or []):
        name = 'kosmos_%d' % index
        params = {**common, 'device': device, 'image_topics': share}
        if depth is not None:  # the same split, entry for entry
            params['depth_topics'] = depth[index::len(devices)]
        path = '/'.join(p for p in ('', namespace.strip('/'), name) if p)
        actions.append(LogInfo(msg='/%s on %s: %s' % (
            path, device, ', '.join(share))))
        actions.append(kosmos_node(name, namespace, params, security))
    return actions


def generate_launch_description():
    description = LaunchDescription([
        DeclareLaunchArgument(
            'cameras', description='Image topics to spread over the devices, '
            "e.g. \"['/cam0/image_raw', '/cam1/image_raw']\""),
        DeclareLaunchArgument(
            'devices', default_value="['cpu']",
            description="One node per device, e.g. \"['cuda:0', 'cuda:1']\""),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of every node (one per '
                              'host when several hosts share a domain)'),
        DeclareLaunchArgument(
            'depth_topics', default_value='', description='Aligned depth '
            'topics, one per camera in the same order ("" for none); split '
            'with the cameras'),
        *declare_arguments(skip=PER_NODE + ('device',)),
        *declare_security_arguments(),
    ])
    description.add_action(OpaqueFunction(function=_nodes,
                                          args=[description]))
    return description
