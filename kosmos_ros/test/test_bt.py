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
"""kosmos_bt's BehaviorTree.CPP nodes against kosmos_node (needs ROS 2)."""

from pathlib import Path
import subprocess
import time

from conftest import require_ros
import pytest

require_ros('rclpy.action')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402, I100

from ros_harness import Streamer, wait_for  # noqa: E402, I100
from test_node_actions import slowed, started  # noqa: E402

pytestmark = pytest.mark.ros
TREES = Path(__file__).resolve().parents[2] / 'kosmos_bt' / 'trees'


@pytest.fixture(scope='module')
def runner():
    """Find kosmos_bt_run, built by colcon (else skip)."""
    from ament_index_python.packages import (get_package_prefix,
                                             PackageNotFoundError)
    try:
        prefix = get_package_prefix('kosmos_bt')
    except PackageNotFoundError:
        pytest.skip('kosmos_bt is not built (it needs behaviortree_cpp): '
                    'colcon build it and source install/setup.bash')
    return str(Path(prefix) / 'lib' / 'kosmos_bt' / 'kosmos_bt_run')


def frames_of(h):
    """Keep publishing a camera frame while a tree runs (a Streamer)."""
    return Streamer(*started(h), period=0.05)


def run_tree(runner, tree, *sets, timeout_s=60):
    args = [runner, str(tree), '--timeout-s', str(timeout_s)]
    for value in sets:
        args += ['--set', value]
    done = subprocess.run(args, capture_output=True, text=True,
                          timeout=timeout_s + 30)
    return done.returncode, done.stdout + done.stderr


def board(out):
    """Read the status and blackboard entries kosmos_bt_run printed."""
    return dict(line.split(': ', 1) for line in out.splitlines()
                if ': ' in line and not line.startswith('['))


def test_the_docs_tree_locates_then_asks(harness, runner):
    h = harness(mode='captions')
    frames = frames_of(h)
    try:
        code, out = run_tree(runner, TREES / 'locate_then_ask.xml')
    finally:
        frames.stop()
    assert code == 0, out
    values = board(out)
    assert values['status'] == 'SUCCESS', out
    assert 0.0 <= float(values['door_score']) <= 1.0
    assert 'answer' in values, out
    assert h.node.calls.counts['answered'] >= 2  # a Locate, then an Ask


def test_a_tree_halted_mid_ask_cancels_its_goal(harness, runner):
    h = harness(mode='captions', max_answer_tokens=512)
    statuses = []
    h.peer.create_subscription(DiagnosticArray, '/diagnostics',
                               statuses.append, 10)
    frames = frames_of(h)
    try:
        with slowed(h.node.worker.engine, 0.01) as seen:
            code, out = run_tree(runner, TREES / 'ask_with_deadline.xml',
                                 'deadline_ms=1500', 'max_tokens=512')
            count = len(seen.steps)
            time.sleep(0.3)
            after = len(seen.steps)
    finally:
        frames.stop()
    assert code == 0, out
    assert board(out)['answer'] == 'no answer in time', out
    assert 'halted; its goal is cancelled' in out, out
    assert 0 < count < 512, 'halted mid-generation'
    assert after == count, 'the generation stopped with the goal'
    assert h.node.calls.counts['cancelled'] == 1

    def reported():
        for msg in statuses[-3:]:
            for status in msg.status:
                values = {v.key: v.value for v in status.values}
                if values.get('ask/locate cancelled') == '1':
                    return True
        return False
    assert wait_for(reported, 5), 'diagnostics count the cancelled goal'


def test_standing_queries_set_seen_and_asked_about(harness, runner, tmp_path):
    h = harness(mode='queries')
    topic = h.ns + '/cam/image_raw/kosmos/queries'
    tree = tmp_path / 'seen.xml'
    tree.write_text("""<root BTCPP_format="4">
  <BehaviorTree ID="Main">
    <Sequence>
      <KosmosSetQueries queries="a red cup;the door"/>
      <RetryUntilSuccessful num_attempts="100">
        <Sequence>
          <Sleep msec="100"/>
          <KosmosSeen topic="%s" phrase="a red cup" min_score="{least}"
                      within="2.0" detection="{cup}"/>
        </Sequence>
      </RetryUntilSuccessful>
      <KosmosAsk question="What colour is it?" detection="{cup}"
                 answer="{answer}"/>
    </Sequence>
  </BehaviorTree>
</root>""" % topic)
    frames = frames_of(h)
    try:
        code, out = run_tree(runner, tree, 'least=0.0')
        assert code == 0 and board(out)['status'] == 'SUCCESS', out
        assert h.node.config.queries == ['a red cup', 'the door']
        # No box scores above 1: the condition keeps failing.
        code, out = run_tree(runner, tree, 'least=1.01', timeout_s=30)
    finally:
        frames.stop()
    assert code == 1 and board(out)['status'] == 'FAILURE', out
