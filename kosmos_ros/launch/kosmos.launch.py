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
Launch kosmos_node on camera topics.

    ros2 launch kosmos_ros kosmos.launch.py image_topics:="['/front/image_raw']"

Launch arguments override the matching entries of config/kosmos.yaml (or of
the file given with params_file:=...).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

# argument: (default, description, parameter type)
ARGUMENTS = {
    'model': ('microsoft/kosmos-2-patch14-224',
              'Hub id or local Kosmos-2 checkpoint folder', str),
    'image_topics': ("['image_raw']",
                     "Image topics as a YAML list, e.g. \"['/cam/image_raw']\"",
                     None),
    'rate': ('2.0', 'Most caption batches per second (0 = unlimited)', float),
    'device': ('auto', 'auto, cpu, cuda or cuda:N', str),
    'dtype': ('auto', 'auto, fp32, fp16 or bf16', str),
    'quantization': ('none', 'none, 8bit or 4bit (CUDA + bitsandbytes)', str),
    'prompt': ('<grounding>An image of', 'Caption prompt', str),
    'max_batch': ('1', 'Most cameras captioned in one batch', int),
}


def generate_launch_description():
    params_file = LaunchConfiguration('params_file')
    overrides = {
        name: ParameterValue(LaunchConfiguration(name), value_type=kind)
        for name, (_, _, kind) in ARGUMENTS.items()}
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file', description='YAML file of kosmos_node parameters',
            default_value=os.path.join(get_package_share_directory(
                'kosmos_ros'), 'config', 'kosmos.yaml')),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node'),
        *[DeclareLaunchArgument(name, default_value=default,
                                description=text)
          for name, (default, text, _) in ARGUMENTS.items()],
        Node(package='kosmos_ros', executable='kosmos_node', name='kosmos',
             namespace=LaunchConfiguration('namespace'), output='screen',
             emulate_tty=True, parameters=[params_file, overrides]),
    ])
