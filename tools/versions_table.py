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
The table of tested versions (kosmos_ros/doc/dependencies.md), made from the locks.

``python3 tools/versions_table.py --write kosmos_ros/doc/dependencies.md`` replaces
the table between its markers (tools/lock.sh does this after writing the
locks, and ``--locks`` tells it which locks there are); a test checks that
the guide holds exactly what ``render()`` makes, so the table cannot be
typed by hand or go stale.
"""

from pathlib import Path
import re
import sys

ROOT = Path(__file__).resolve().parents[1]
BEGIN = '<!-- versions: made by tools/versions_table.py from constraints/ -->'
END = '<!-- versions: end -->'

# lock file, what it is for, and where it runs. tools/lock.sh writes and
# checks every py3.X lock named here: this is the one list of them.
SETS = (
    ('py3.10.txt', 'Python 3.10, no ROS', 'tools/matrix.sh'),
    ('py3.11.txt', 'Python 3.11, no ROS', 'tools/matrix.sh, .ci/run'),
    ('py3.12.txt', 'Python 3.12, no ROS', 'tools/matrix.sh'),
    ('py3.13.txt', 'Python 3.13, no ROS', 'tools/matrix.sh'),
    ('py3.14.txt', 'Python 3.14, no ROS', 'resolved by tools/lock.sh '
     '--check (pip --python-version 3.14: no 3.14 interpreter here)'),
    ('ros-humble-py3.10.txt', 'Humble (Ubuntu 22.04, Python 3.10): '
     'Dockerfile, workspace', 'resolved by tools/lock.sh --check; GitHub CI'),
    ('ros-humble-py3.11.txt', 'Humble from source (Debian 12, Python 3.11)',
     '.ci/run, with the node tests'),
    ('ros-jazzy-py3.11.txt', 'Jazzy from source (Debian 12, Python 3.11)',
     'tools/test.sh with Jazzy sourced'),
    ('ros-jazzy-py3.12.txt', 'Jazzy (Ubuntu 24.04, Python 3.12): '
     'Dockerfile, workspace', 'resolved by tools/lock.sh --check; GitHub CI'),
    ('ros-lyrical-py3.13.txt', 'Lyrical from source (Python 3.13, as '
     'Debian 13)', 'tools/test.sh with Lyrical sourced'),
    ('ros-lyrical-py3.14.txt', 'Lyrical (Ubuntu 26.04, Python 3.14): '
     'Dockerfile, workspace', 'resolved by tools/lock.sh --check (pip '
     '--python-version 3.14); GitHub CI'),
    ('lowest.txt', 'the lower bounds of setup.py, on Python 3.10',
     'tools/matrix.sh'),
)
COLUMNS = ('torch', 'transformers', 'numpy', 'opencv-python-headless',
           'tokenizers', 'huggingface-hub', 'accelerate', 'safetensors',
           'pillow')


def read_lock(path):
    """Map each package (normalised name) a lock pins to its version."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split('#')[0].strip()
        if '==' in line:
            name, version = line.split('==')
            pins[re.sub(r'[-_.]+', '-', name).lower()] = version.strip()
    return pins


def render(constraints=ROOT / 'constraints'):
    """Return the Markdown table, markers included."""
    rows = [BEGIN,
            '| lock | for | run by | %s |' % ' | '.join(COLUMNS),
            '|%s' % ('---|' * (len(COLUMNS) + 3))]
    for name, use, where in SETS:
        pins = read_lock(constraints / name)
        rows.append('| `constraints/%s` | %s | %s | %s |' % (
            name, use, where,
            ' | '.join(pins.get(column, '') for column in COLUMNS)))
    return '\n'.join(rows + [END])


def replace(text, table):
    """``text`` with the part between the markers replaced by ``table``."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + table + text[end:]


def main(argv):
    if argv == ['--locks']:  # what tools/lock.sh writes and checks
        print('\n'.join(name for name, _, _ in SETS if 'py3.' in name))
        return 0
    if len(argv) != 2 or argv[0] != '--write':
        print('usage: versions_table.py --write kosmos_ros/doc/dependencies.md | --locks')
        return 2
    path = Path(argv[1])
    path.write_text(replace(path.read_text(), render()))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
