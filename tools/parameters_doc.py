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
kosmos_ros/doc/parameters.md, made from the one parameter table (``config.PARAMETERS``).

``python3 tools/parameters_doc.py --write`` rewrites the file; a test checks
that it holds exactly what ``render()`` makes, so the reference cannot be
typed by hand or go stale. config.py imports no ROS, so this runs anywhere
the package's model extra is installed.
"""

from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / 'kosmos_ros' / 'doc' / 'parameters.md'
sys.path.insert(0, str(ROOT / 'kosmos_ros'))

from kosmos_ros.ros.config import PARAMETERS, yaml_value  # noqa: E402

HEAD = """\
# Parameters

<!-- Made by tools/parameters_doc.py from kosmos_ros/ros/config.py: edit
     the table there, then run `python3 tools/parameters_doc.py --write`. -->

Every parameter of `kosmos_node`, declared once in
`kosmos_ros/ros/config.py`: the node declares exactly these (`ros2 param
describe /kosmos NAME` shows each description and range), each is a launch
argument of `kosmos.launch.py` with the same default, and
`config/kosmos.yaml` lists them all. **runtime** ones change while the node
runs (`ros2 param set /kosmos rate 1`); the others are read at configure.

Every value is checked at configure, before the model loads; a bad one
fails the transition with one line naming the parameter, the accepted range
and the value (`parameter 'rate' must be in [0.0, 1000.0], got -1.0`), and
with `autostart` the process exits 1. A bad runtime value is refused with
the same line and the value in force stays. diagnostic_updater adds its own
`diagnostic_updater.period` and `diagnostic_updater.use_fqn`.

| name | type | default | accepts | runtime | description |
|---|---|---|---|---|---|
"""
KINDS = {bool: 'bool', int: 'int', float: 'double', str: 'string',
         list: 'string[]'}


def accepts(param):
    """Return what values the parameter takes, as the doc says it."""
    if param.low is not None:
        return '%s .. %s' % (param.low, param.high)
    if param.choices:
        return ', '.join('`%s`' % choice for choice in param.choices)
    return ''


def render():
    """Return kosmos_ros/doc/parameters.md as it must be."""
    rows = ['| `%s` | %s | `%s` | %s | %s | %s |' % (
        name, KINDS[param.kind], yaml_value(param.default) or '""',
        accepts(param),
        'yes' if param.runtime else '', param.description.replace('|', '\\|'))
        for name, param in PARAMETERS.items()]
    return HEAD + '\n'.join(rows) + '\n'


def main(argv):
    if argv != ['--write']:
        print('usage: parameters_doc.py --write')
        return 2
    DOC.write_text(render())
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
