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
The CLI layer: the kosmos-ros command, without ROS.

main parses the commands (caption, ask, locate, make-tiny-model,
bench), bench and bench_decode measure. Rule: may import model,
spatial and pipeline, never ROS or ros: the command must work on
a machine without ROS 2.
"""
