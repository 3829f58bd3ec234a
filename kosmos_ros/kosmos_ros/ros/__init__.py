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
The ROS layer: kosmos_node, the shell around the pipeline.

node only wires: parameters declares the config table, each
cameras.Camera owns its subscriptions and publishers, outputs
publishes a frame's results (markers: their RViz form), calls is the
one path of Ask/Locate that services and actions front, positions adds
3D from depth and TF, diagnostics reports health, logs keeps what a
transition raises and the worker's levels, conversions turns messages into
arrays and back, launching serves the launch files. Rule: the only layer
that imports rclpy, tf2, cv_bridge or message packages; it may import every
other layer except cli.
"""
