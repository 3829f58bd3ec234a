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
tools/soak.py for two minutes on a real ROS 2, as part of the suite.

The node, driven as a robot would drive it (two cameras at 15 Hz, Ask calls
and Locate goals with a third cancelled, parameter flips, listener churn,
two deactivate/activate cycles, a client that dies mid-goal), must stay
alive, answer every call, keep every output flowing (no gap over 10 s while
active), return to its threads and fds after each cycle, and not grow fast.
Two minutes cannot measure the hour-long slope (doc/performance.md has the
60-minute run, cycles and all): RSS still steps up by 1-6 MB at each cycle
as a new worker thread fills a glibc arena, and two such steps in one
minute read as 640 MB/hour (a CI run failed on that). So the bound here is
on the growth between cycles, which catches a leak per frame or per call:
without a leak it measured 250-330 MB/hour in the second minute (warm-up),
with 10 kB kept per frame received 1,282 (checked by planting that leak).
"""

import json
import os
import subprocess
import sys

from conftest import require_installed, require_ros
import pytest

require_ros('rclpy', 'cv_bridge')
require_installed()

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
# MB/hour over the second minute, without the steps at the lifecycle cycles
# (the 60-minute run's bound, 20, is with them).
MAX_SLOPE_2MIN = 800.0


@pytest.mark.ros
def test_two_minutes_of_a_robots_traffic(tmp_path):
    summary_path = tmp_path / 'soak.json'
    env = dict(os.environ, ROS_DOMAIN_ID=str(100 + os.getpid() % 100),
               PYTHONPATH=os.pathsep.join(
                   [os.path.join(ROOT, 'kosmos_ros'),
                    os.environ.get('PYTHONPATH', '')]))
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'soak.py'),
         '--minutes', '2', '--interval', '10', '--cycle-every', '45',
         '--max-slope', 'inf', '--max-slope-between-cycles',
         str(MAX_SLOPE_2MIN), '--json', str(summary_path),
         '--node-log', str(tmp_path / 'node.log')],
        env=env, capture_output=True, text=True, timeout=400)
    assert summary_path.exists(), result.stdout[-3000:] + result.stderr
    summary = json.loads(summary_path.read_text())
    print('\n' + '\n'.join(line for line in result.stdout.splitlines()
                           if line.startswith('[soak]')))
    print('calls %s; latency %s; slope %s MB/h; silence %s' % (
        summary['calls'], summary['latency_ms'],
        summary['rss_slope_between_cycles_mb_per_hour'],
        summary['longest_silence_s']))
    assert summary['failures'] == [], summary
    assert result.returncode == 0
    assert summary['alive'] and len(summary['lifecycle_cycles']) == 2
    calls = summary['calls']
    assert calls['ask_answered'] > 0 and calls['locate_answered'] > 0
    assert calls['cancelled'] > 0 and calls['unanswered'] == 0
