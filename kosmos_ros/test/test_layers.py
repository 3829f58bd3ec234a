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
The layer rule of kosmos_ros/__init__.py, read from every import statement.

Every import counts, the ones inside functions too (the package imports
torch, cv2 and the 3D part lazily), so a lazy ``import rclpy`` in the model
layer fails here as surely as one at the top of a file.
"""

import ast
from pathlib import Path
import re
import sys

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'kosmos_ros'
LAYERS = ('model', 'spatial', 'pipeline', 'ros', 'cli')
# What each layer may import of kosmos_ros besides itself.
ALLOWED = {
    'model': set(),
    'spatial': set(),
    'pipeline': {'model', 'spatial'},
    'ros': {'model', 'spatial', 'pipeline'},
    'cli': {'model', 'spatial', 'pipeline'},
}
# Imported by the ROS layer only. (Also any *_msgs / *_interfaces package.)
ROS_PACKAGES = {
    'rclpy', 'rcl_interfaces', 'rosidl_runtime_py', 'tf2_ros', 'tf2_py',
    'tf2_geometry_msgs', 'cv_bridge', 'image_geometry', 'message_filters',
    'diagnostic_updater', 'launch', 'launch_ros', 'ament_index_python',
}
# Third-party packages the spatial layer may use: its math is numpy only.
SPATIAL_PACKAGES = {'numpy'}


def imported(source, module):
    """Return every absolute module name ``source`` (of ``module``) imports."""
    package = module.split('.')[:-1]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                stem = '.'.join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            names.append(stem)
            # `from . import grounding` imports a module, not a name.
            names += [stem + '.' + alias.name for alias in node.names]
    return names


def is_ros(name):
    """Whether ``name`` belongs to ROS 2 (rclpy, tf2, messages, ...)."""
    top = name.split('.')[0]
    return top in ROS_PACKAGES or top.endswith(('_msgs', '_interfaces'))


def violations(module, source):
    """Return why ``module``'s imports break the layer rule, one per line."""
    parts = module.split('.')
    layer = parts[1] if len(parts) > 2 else None  # None: kosmos_ros/__init__
    found = []
    for name in imported(source, module):
        top = name.split('.')
        if top[0] == 'kosmos_ros':
            other = top[1] if len(top) > 1 else None
            if other in LAYERS and other != layer and \
                    other not in ALLOWED.get(layer, set()):
                found.append('%s imports %s: the %s layer may not import '
                             'the %s layer' % (module, name, layer, other))
        elif is_ros(name) and layer != 'ros':
            found.append('%s imports %s: only the ros layer imports ROS' % (
                module, name))
        elif layer == 'spatial' and top[0] not in SPATIAL_PACKAGES and \
                top[0] not in sys.stdlib_module_names:
            found.append('%s imports %s: the spatial layer is numpy only' % (
                module, name))
    return found


def modules():
    """Return (module name, source) of every module of the package."""
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        yield '.'.join(parts), path.read_text()


def test_every_module_is_in_a_layer():
    loose = [m for m, _ in modules()
             if len(m.split('.')) == 2 and m != 'kosmos_ros.__init__']
    assert not loose, 'modules outside the layers: %s' % loose
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and
            (p / '__init__.py').exists()} == set(LAYERS)


def test_each_layer_states_its_rule():
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse(
            (PACKAGE / layer / '__init__.py').read_text()))
        assert doc and 'Rule:' in doc, '%s/__init__.py states no rule' % layer


def test_the_package_keeps_the_layer_rule():
    found = [why for module, source in modules()
             for why in violations(module, source)]
    assert not found, '\n'.join(found)


@pytest.mark.parametrize('module, source', [
    ('kosmos_ros.model.engine', 'import rclpy\n'),
    ('kosmos_ros.model.engine', 'def load():\n    from rclpy.node import Node\n'),
    ('kosmos_ros.pipeline.worker', 'from sensor_msgs.msg import Image\n'),
    ('kosmos_ros.cli.main', 'from tf2_ros import Buffer\n'),
    ('kosmos_ros.spatial.depth', 'import cv_bridge\n'),
    ('kosmos_ros.model.engine', 'from ..pipeline.frames import Frame\n'),
    ('kosmos_ros.model.engine', 'from ..pipeline import worker\n'),
    ('kosmos_ros.model.engine', 'import kosmos_ros.ros.node\n'),
    ('kosmos_ros.pipeline.worker', 'from ..ros import conversions\n'),
    ('kosmos_ros.cli.main', 'from ..ros.config import PARAMETERS\n'),
    ('kosmos_ros.spatial.depth', 'from ..model import engine\n'),
    ('kosmos_ros.spatial.depth', 'import torch\n'),
])
def test_a_broken_rule_is_caught(module, source):
    assert violations(module, source)


@pytest.mark.parametrize('module, source', [
    ('kosmos_ros.ros.node', 'import rclpy\nfrom ..pipeline import worker\n'),
    ('kosmos_ros.pipeline.worker', 'from ..model.preprocess import ImageError\n'),
    ('kosmos_ros.model.engine', 'from . import grounding\nimport torch\n'),
    ('kosmos_ros.spatial.depth', 'import math\nimport numpy as np\n'),
])
def test_an_allowed_import_passes(module, source):
    assert violations(module, source) == []


def test_the_architecture_guide_names_modules_that_exist():
    guide = (PACKAGE.parent / 'doc' / 'architecture.md').read_text()
    named = set(re.findall(r'\b((?:%s)/\w+\.py)\b' % '|'.join(LAYERS),
                           guide))
    assert len(named) >= 10, 'the architecture section names the modules'
    missing = sorted(n for n in named if not (PACKAGE / n).exists())
    assert not missing, \
        'kosmos_ros/doc/architecture.md names missing modules: %s' % missing


def cycles(graph):
    """Return each import cycle of ``graph`` ({module: modules}) once."""
    found, done = set(), set()

    def visit(module, path):
        if module in path:
            cycle = path[path.index(module):]
            start = cycle.index(min(cycle))  # one rotation per cycle
            found.add(tuple(cycle[start:] + cycle[:start]))
            return
        if module in done:
            return
        for other in graph.get(module, ()):
            visit(other, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return sorted(found)


def import_graph():
    """Map each module to the package's modules it imports, lazily or not."""
    names = {m.replace('.__init__', '') for m, _ in modules()}
    return {module.replace('.__init__', ''): {
        name for name in imported(source, module)
        if name in names and name != module.replace('.__init__', '')}
        for module, source in modules()}


def test_no_two_modules_import_each_other_in_a_circle():
    graph = {m: {n for n in names if n.count('.') > 1}  # not the layers'
             for m, names in import_graph().items()}    # __init__s
    assert cycles(graph) == []


def test_a_circle_is_caught():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [
        ('a', 'b', 'c')]


# rclpy API that later distributions removed: each still works on Humble,
# so only a run on the newest distribution would find it.
REMOVED = [(re.compile(r'(?<!warnings)\.warn\('), 'RcutilsLogger.warn: gone in '
            'rclpy 10 (Lyrical); use .warning')]


def removed_api(source):
    """Return why ``source`` calls rclpy API a newer distribution removed."""
    return ['%s: %s' % (line.strip(), why) for line in source.splitlines()
            for pattern, why in REMOVED if pattern.search(line)]


def test_no_rclpy_api_that_a_newer_distribution_removed():
    found = [why for _, source in modules() for why in removed_api(source)]
    assert found == []


def test_a_removed_api_is_caught():
    assert removed_api("node.get_logger().warn('x')\n")
    assert removed_api("warnings.warn('x')\nlogger.warning('x')\n") == []


def test_each_module_opens_with_what_it_is_for():
    # The licence header may come first; the docstring's first line says
    # the module's purpose (pydocstyle's D100 is off, as in ament's rules).
    silent = [module for module, source in modules()
              if not (ast.get_docstring(ast.parse(source)) or '').strip()
              .splitlines()[:1]]
    assert silent == []
