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
The dependency policy: bounds in setup.py, the locks, and every recipe.

Every runtime dependency has a lower bound, and constraints/lowest.txt holds
exactly those bounds (tools/matrix.sh runs them); each lock pins every
dependency inside setup.py's ranges; the Dockerfile and the README install a
lock, never versions typed by hand; kosmos_ros/doc/dependencies.md's table
is made from the locks.
That the locks resolve on their own Pythons is tools/lock.sh --check.
"""

import ast
import importlib.util
from pathlib import Path
import re
import subprocess
import sys

from packaging.requirements import Requirement
from packaging.version import Version
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / 'constraints'
PYTHONS = ('3.10', '3.11', '3.12', '3.13', '3.14')
VERMIN = [sys.executable, '-c', 'import sys, vermin; sys.exit(vermin.main())',
          '--no-tips', '--violations', '-t=%s-' % PYTHONS[0]]


def _setup_keywords():
    """Return setup()'s keyword arguments in setup.py, without running it."""
    tree = ast.parse((ROOT / 'kosmos_ros' / 'setup.py').read_text())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, 'id', '') == 'setup')
    return {k.arg: k.value for k in call.keywords}


def _extras():
    extras = ast.literal_eval(_setup_keywords()['extras_require'])
    return {name: [Requirement(r) for r in reqs]
            for name, reqs in extras.items()}


def _name(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def _lock(name):
    pins = {}
    for line in (CONSTRAINTS / name).read_text().splitlines():
        line = line.split('#')[0].strip()
        if line:
            assert '==' in line, '%s: %r is not a pin' % (name, line)
            package, version = line.split('==')
            pins[_name(package)] = version
    return pins


LOCKS = sorted(path.name for path in CONSTRAINTS.glob('*py3.*.txt'))
DISTROS = sorted(path.stem[len('ros-'):]
                 for path in CONSTRAINTS.glob('ros-*.in'))


def test_every_runtime_dependency_has_a_lower_bound_and_lowest_txt_holds_it():
    lowest = _lock('lowest.txt')
    bounds = {}
    for requirement in _extras()['model']:
        lower = [s.version for s in requirement.specifier if s.operator == '>=']
        assert lower, '%s has no lower bound' % requirement
        bounds[_name(requirement.name)] = Version(lower[0])
    assert set(lowest) == set(bounds)
    for name, version in lowest.items():
        assert Version(version) == bounds[name], name


def test_upper_bounds_only_where_a_break_is_known():
    # No runtime dependency has one today: a new one must say why, here.
    capped = [str(r) for reqs in _extras().values() for r in reqs
              if any(s.operator in ('<', '<=', '~=', '==')
                     for s in r.specifier)]
    assert capped == []


@pytest.mark.parametrize('lock', LOCKS)
def test_each_lock_pins_every_dependency_inside_the_ranges(lock):
    pins = _lock(lock)
    version = re.search(r'py(3\.\d+)', lock).group(1)
    assert version in PYTHONS
    header = (CONSTRAINTS / lock).read_text().splitlines()[0]
    assert 'Python %s' % version in header
    assert ('ROS' in header) == lock.startswith('ros-')
    extras = _extras()
    for requirement in extras['model'] + extras['test'] + extras['lint']:
        name = _name(requirement.name)
        assert name in pins, '%s does not pin %s' % (lock, name)
        assert requirement.specifier.contains(pins[name]), (lock, name)
    if lock.startswith('ros-'):
        distro = lock.split('-')[1]
        assert distro.capitalize() in header
        for line in (CONSTRAINTS / ('ros-%s.in' % distro)).read_text(
                ).splitlines():
            if line and not line.startswith('#'):
                requirement = Requirement(line)
                assert requirement.specifier.contains(
                    pins[_name(requirement.name)]), (lock, line)
    assert Version(pins['torch']) == Version(_lock('py3.11.txt')['torch'])


def _dockerfile_pythons():
    """Return the Dockerfile's table: each distribution's Python."""
    dockerfile = (ROOT / 'Dockerfile').read_text()
    return dict(re.findall(r'^\s+(\w+)\) py=(3\.\d+) ;;', dockerfile, re.M))


def test_distributions_are_in_step_across_locks_dockerfile_and_workflow():
    """One set of distributions: install sets, locks, image, CI."""
    pythons = _dockerfile_pythons()
    workflow = yaml.safe_load(
        (ROOT / '.github' / 'workflows' / 'ci.yml').read_text())
    assert DISTROS == ['humble', 'jazzy', 'lyrical']
    assert sorted(pythons) == DISTROS
    assert sorted(workflow['jobs']['test']['strategy']['matrix']['distro']) \
        == DISTROS
    # Each image's Python has its lock (what the Dockerfile installs and the
    # workflow's tools/test.sh picks) ...
    for distro, version in pythons.items():
        assert 'ros-%s-py%s.txt' % (distro, version) in LOCKS
    # ... and every ROS lock belongs to a distribution with an install set.
    for lock in LOCKS:
        if lock.startswith('ros-'):
            assert lock.split('-')[1] in DISTROS, lock
    # The Python of each image, as that distribution's platform has it.
    assert pythons == {'humble': '3.10', 'jazzy': '3.12', 'lyrical': '3.14'}


def test_numpy_under_ros_follows_the_distribution():
    """Humble's and Jazzy's extensions need numpy 1.x, Lyrical's >= 2.3.4."""
    for lock in LOCKS:
        if lock.startswith('ros-'):
            numpy = Version(_lock(lock)['numpy'])
            if lock.startswith('ros-lyrical-'):
                assert numpy >= Version('2.3.4'), lock
            else:
                assert numpy.major == 1, lock


def test_python_floor_is_the_oldest_locked_python():
    floor = ast.literal_eval(_setup_keywords()['python_requires'])
    assert floor == '>=%s' % PYTHONS[0]


def test_no_module_needs_a_python_newer_than_the_floor():
    pytest.importorskip('vermin', reason='vermin is in the test extra')
    sources = [str(ROOT / 'kosmos_ros' / part) for part in
               ('kosmos_ros', 'launch', 'test', 'setup.py')]
    sources += [str(ROOT / 'examples'), str(ROOT / 'tools')]
    result = subprocess.run(VERMIN + ['--eval-annotations'] + sources,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_python_check_catches_a_newer_module(tmp_path):
    pytest.importorskip('vermin', reason='vermin is in the test extra')
    (tmp_path / 'new.py').write_text('import tomllib\n')
    result = subprocess.run(VERMIN + [str(tmp_path)], capture_output=True,
                            text=True)
    assert result.returncode != 0 and 'tomllib' in result.stdout


def test_readme_table_of_tested_versions_is_made_from_the_locks():
    spec = importlib.util.spec_from_file_location(
        'versions_table', ROOT / 'tools' / 'versions_table.py')
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    assert table.render() in (ROOT / 'kosmos_ros' / 'doc' / 'dependencies.md').read_text()
    assert {name for name, _, _ in table.SETS} == set(LOCKS) | {'lowest.txt'}


def _pip_lines(text):
    """Return every pip install command in ``text``, continuations joined."""
    joined = re.sub(r'\\\n\s*', ' ', text)
    return [line for line in joined.splitlines() if 'pip install' in line]


def _installs_the_lock(line, model_names):
    assert 'constraints/ros-' in line, line
    assert '==' not in line, 'a version typed by hand: %s' % line
    for name in model_names:
        assert re.search(r"[\s']%s[\s'<>=]" % re.escape(name), line + ' '), \
            (name, line)


def test_dockerfile_installs_the_lock_of_its_own_python():
    dockerfile = (ROOT / 'Dockerfile').read_text()
    # ROS's python3-opencv serves cv_bridge and us there.
    names = [r.name for r in _extras()['model']
             if r.name != 'opencv-python-headless']
    (line,) = _pip_lines(dockerfile)
    _installs_the_lock(line, names)
    assert 'sys.version_info' in dockerfile  # the lock follows the image's Python


def test_readme_workspace_steps_install_the_lock():
    readme = (ROOT / 'README.md').read_text()
    steps = readme[readme.index('### In a ROS 2 workspace'):]
    steps = steps[:steps.index('```', steps.index('```bash') + 7)]
    names = [r.name for r in _extras()['model']
             if r.name != 'opencv-python-headless']
    lines = [line for line in _pip_lines(steps)
             if not line.lstrip().startswith('#')]
    assert lines
    for line in lines:
        _installs_the_lock(line, names)


def test_package_xml_names_no_pip_rosdep_key():
    # rosdep's pip keys (python3-pytorch-pip among them) are end-of-life:
    # the model stack is a pip step with a lock instead.
    package = (ROOT / 'kosmos_ros' / 'package.xml').read_text()
    keys = re.findall(r'<(?:\w+_)?depend>([^<]+)</', package)
    assert 'rclpy' in keys
    assert [key for key in keys if key.endswith('-pip')] == []
    for recipe in ('Dockerfile', '.github/workflows/ci.yml'):
        assert '--skip-keys' not in (ROOT / recipe).read_text(), recipe
