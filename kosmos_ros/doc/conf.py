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
Sphinx settings for the package's documentation, as rosdoc2 builds it.

rosdoc2 (what docs.ros.org runs) includes the guides of this folder and the
API of every module; `tools/docs.sh` builds it here and fails on a warning.
"""

import os
import re
import sys


def _package_dir():
    """Return the package's folder, whether Sphinx or rosdoc2 reads us."""
    # rosdoc2 execs this file from a conf.py of its own (this __file__),
    # which names ours; plain sphinx-build reads ours directly.
    here = os.path.abspath(__file__)
    with open(here) as conf:
        named = re.search(r'exec\(open\("([^"]+)"\)', conf.read())
    return os.path.dirname(os.path.dirname(named.group(1) if named else here))


sys.path.insert(0, _package_dir())  # autodoc imports kosmos_ros from here

# Our own autodoc: rosdoc2's would replace autodoc_mock_imports with the
# package.xml dependencies it cannot import, and the model stack (a pip
# step, not a rosdep key) would be missing from that list.
rosdoc2_settings = {'enable_autodoc': False}
extensions = ['sphinx.ext.autodoc']
autodoc_mock_imports = [
    'torch', 'transformers', 'huggingface_hub', 'accelerate', 'safetensors',
    'tokenizers', 'bitsandbytes', 'PIL', 'cv2', 'numpy', 'yaml',
    'rclpy', 'rcl_interfaces', 'lifecycle_msgs', 'std_msgs', 'sensor_msgs',
    'vision_msgs', 'visualization_msgs', 'geometry_msgs', 'diagnostic_msgs',
    'builtin_interfaces', 'action_msgs', 'kosmos_ros_interfaces',
    'diagnostic_updater', 'cv_bridge', 'tf2_ros', 'launch', 'launch_ros',
    'ament_index_python',
]
# The guides link to each other's headings (GitHub's anchors).
myst_heading_anchors = 3
# rosdoc2 copies this folder twice: beside conf.py and under user_docs/,
# which its index lists; the copy beside conf.py is not a page.
exclude_patterns = ['*.md', 'images']
# The architecture diagrams are Mermaid (GitHub draws them); Sphinx shows
# them as text, having no lexer to colour them with.
suppress_warnings = ['misc.highlighting_failure']
