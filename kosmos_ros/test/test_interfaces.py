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
"""The action definitions stay the services' own fields; the trees, loadable."""

from pathlib import Path
import re
import xml.etree.ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTERFACES = ROOT / 'kosmos_ros_interfaces'


def fields(text):
    """Return the (type, name) of each field of one section of an IDL file."""
    found = []
    for line in text.splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            kind, name = line.split()[:2]
            found.append((kind, name))
    return found


@pytest.mark.parametrize('name', ['Ask', 'Locate'])
def test_an_action_is_its_service_plus_feedback(name):
    # A goal is the service's request and a result its response, so one
    # path (ros/calls.py) fills both; IDL cannot include, so this checks.
    request, response = (INTERFACES / 'srv' / (name + '.srv')).read_text(
    ).split('\n---\n')
    goal, result, feedback = (INTERFACES / 'action' / (
        name + '.action')).read_text().split('\n---\n')
    assert fields(goal) == fields(request)
    assert fields(result) == fields(response)
    assert ('string', 'state') in fields(feedback)
    assert ('uint32', 'tokens') in fields(feedback)
    cmake = (INTERFACES / 'CMakeLists.txt').read_text()
    assert '"action/%s.action"' % name in cmake


def test_the_trees_name_only_nodes_kosmos_bt_registers():
    plugin = (ROOT / 'kosmos_bt' / 'src' / 'plugin.cpp').read_text()
    registered = set(re.findall(r'registerNodeType<\w+>\("(\w+)"\)', plugin))
    assert registered == {'KosmosAsk', 'KosmosLocate', 'KosmosSetQueries',
                          'KosmosSeen'}
    trees = sorted((ROOT / 'kosmos_bt' / 'trees').glob('*.xml'))
    assert trees
    for tree in trees:
        root = ET.parse(tree).getroot()
        assert root.get('BTCPP_format') == '4'
        used = {e.tag for e in root.iter() if e.tag.startswith('Kosmos')}
        assert used and used <= registered, (tree.name, used)
