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
"""The GitHub workflow runs what the README says and .ci/run runs here."""

from pathlib import Path
import re

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / '.github' / 'workflows' / 'ci.yml'


def _steps():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow['jobs']['test']
    return job, {step.get('name', step.get('uses')): step.get('run', '')
                 for step in job['steps']}


def _words(text):
    return re.sub(r'\s+', ' ', text.replace('\\\n', ' ')).strip()


def test_every_distro_in_its_ros_image():
    job, _ = _steps()
    assert job['strategy']['matrix']['distro'] == [
        'humble', 'jazzy', 'lyrical']
    assert job['container']['image'] == 'ros:${{ matrix.distro }}-ros-base'
    assert job['env']['TORCH_INDEX'] == 'https://download.pytorch.org/whl/cpu'


def test_the_workflow_runs_the_readme_commands():
    readme = (ROOT / 'README.md').read_text()
    block = readme[readme.index('## The two commands'):]
    block = block[block.index('```bash') + 7:]
    block = block[:block.index('```')]
    test_cmd, demo_cmd = [
        _words('\n'.join(line for line in paragraph.splitlines()
                         if not line.startswith('#')))
        for paragraph in block.strip().split('\n\n')]
    _, runs = _steps()
    assert test_cmd == 'bash tools/test.sh'
    assert any(_words(run) == test_cmd for run in runs.values())
    assert any(_words(run) == demo_cmd for run in runs.values()), demo_cmd
    assert 'bash tools/test.sh' in (ROOT / '.ci' / 'run').read_text()
