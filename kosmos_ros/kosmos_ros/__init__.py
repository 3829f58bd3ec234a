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
kosmos_ros: grounded vision-language perception for ROS 2 with Kosmos-2.

Five layers, each a sub-package; a layer imports only the layers above it
in this list (test_layers.py enforces it):

- model: Kosmos-2 itself - loading, preprocessing, decoding, grounded
  text, questions, the engine. No ROS, nothing of the other layers.
- spatial: the 3D math - depth to metres, camera models, pairing depth
  with colour frames by stamp, rigid transforms. numpy only.
- pipeline: frames from cameras to results - the latest-frame scheduler,
  the one model thread, health, track ids, annotation. No ROS.
- ros: the ROS 2 shell - the lifecycle node, its parameters, cameras,
  services, outputs, 3D positions, diagnostics, launch helpers. The only
  layer that imports rclpy, tf2, cv_bridge or message packages.
- cli: the kosmos-ros command (caption, bench, ...). No ROS.
"""

__version__ = '0.1.0'
