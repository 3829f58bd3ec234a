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
"""Standing phrase queries and track ids on kosmos_node (needs ROS 2)."""

import subprocess

from conftest import make_frame, require_ros
import pytest

require_ros()

from kosmos_ros_interfaces.msg import Caption  # noqa: E402, I100
from kosmos_ros_interfaces.srv import SetQueries  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import (DurabilityPolicy, QoSProfile,  # noqa: E402
                       ReliabilityPolicy)
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

from ros_harness import call, image_msg, wait_for  # noqa: E402, I100

pytestmark = pytest.mark.ros
QUERIES = 'cam/image_raw/kosmos/queries'
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE)


def label_info(h):
    """Subscribe as a late joiner would: transient local."""
    box = []
    h.peer.create_subscription(LabelInfo, h.ns + '/' + QUERIES + '/label_info',
                               box.append, LATCHED)
    return box


def names(msg):
    return [c.class_name for c in msg.class_map]


def stream(h, box, count, sec0=100):
    """Publish one frame at rising stamps until ``count`` messages came."""
    pub = h.publisher('cam/image_raw')
    frame = make_frame(240, 320, seed=3)
    sec = sec0
    while len(box) < count:
        before = len(box)
        msg = image_msg(frame, sec=sec)
        assert h.publish_until(pub, msg, box, count=before + 1), 'no output'
        sec += 1
    return box


def set_queries(h, queries):
    return call(h, SetQueries, '/kosmos/set_queries',
                SetQueries.Request(queries=queries))


def test_queries_set_at_runtime_give_tracked_boxes_named_by_the_query(
        harness):
    h = harness()
    found = h.listen(QUERIES, Detection2DArray)
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    vocab = label_info(h)
    assert wait_for(lambda: vocab), 'LabelInfo is latched from configure'
    assert names(vocab[-1]) == []
    stream(h, dets, 1)
    assert not found, 'no queries: nothing on the queries topic'

    queries = ['a red cup', 'the door handle']
    answer = set_queries(h, queries)
    assert answer.success, answer.message
    assert list(answer.queries) == queries
    assert h.node.get_parameter('queries').value == queries
    assert wait_for(lambda: names(vocab[-1]) == queries)
    assert [c.class_id for c in vocab[-1].class_map] == [0, 1]

    stream(h, found, 3)
    ids = []
    for msg in found[:3]:
        assert msg.header.frame_id == 'front_cam'
        assert msg.detections, 'the tiny model grounds the phrases'
        for det in msg.detections:
            assert det.header == msg.header
            hyp = det.results[0].hypothesis
            assert hyp.class_id in queries  # exactly as given
            assert 0.0 < hyp.score <= 1.0
        ids.append([(d.results[0].hypothesis.class_id, d.id)
                    for d in msg.detections])
    # The same scene at rising stamps: the same entities, the same ids.
    assert ids[0] == ids[1] == ids[2]
    assert all(track for _, track in ids[0])
    assert len({track for _, track in ids[0]}) == len(ids[0])
    # Caption detections carry track ids of their own, stable too.
    tracked = [[d.id for d in m.detections] for m in dets[-2:]]
    assert tracked[0] and tracked[0] == tracked[1]

    answer = set_queries(h, [])
    assert answer.success and list(answer.queries) == []
    assert wait_for(lambda: names(vocab[-1]) == [])
    late = label_info(h)  # a consumer that joins now gets the latest list
    assert wait_for(lambda: late) and names(late[-1]) == []


@pytest.mark.parametrize('queries, reason', [
    (['a cup'] * 2, 'distinct'),
    (['cup %d' % k for k in range(17)], 'at most 16'),
    (['a cup', ''], 'empty'),
    (['a cup', ' <phrase>x'], 'plain text'),
    (['x' * 501], 'more than the 500 allowed'),
])
def test_bad_query_lists_are_refused_and_the_list_in_force_stands(
        harness, queries, reason):
    h = harness(queries=['a red cup'])
    vocab = label_info(h)
    assert wait_for(lambda: vocab)
    answer = set_queries(h, queries)
    assert not answer.success
    assert reason in answer.message
    assert list(answer.queries) == ['a red cup']
    assert h.node.config.queries == ['a red cup']
    assert h.node.worker.queries == ('a red cup',)
    assert len(vocab) == 1, 'no LabelInfo for a refused list'


def test_queries_longer_than_max_question_chars_are_refused(harness):
    h = harness(max_question_chars=10)
    answer = set_queries(h, ['a much longer phrase'])
    assert not answer.success and 'more than the 10 allowed' in \
        answer.message


def test_ros2_param_set_queries_as_the_readme_shows(harness):
    if subprocess.run(['which', 'ros2'], capture_output=True).returncode:
        pytest.skip('the ros2 command line is not on PATH')
    h = harness()
    found = h.listen(QUERIES, Detection2DArray)
    done = subprocess.run(
        ['ros2', 'param', 'set', '--no-daemon', '/kosmos', 'queries',
         "['a red cup', 'the door handle']"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and 'successful' in done.stdout, \
        done.stdout + done.stderr
    assert h.node.config.queries == ['a red cup', 'the door handle']
    stream(h, found, 1)
    assert {d.results[0].hypothesis.class_id
            for d in found[0].detections} <= {'a red cup', 'the door handle'}
    done = subprocess.run(
        ['ros2', 'param', 'set', '--no-daemon', '/kosmos', 'queries',
         "['a <b>']"],
        capture_output=True, text=True, timeout=60)
    assert 'plain text' in done.stdout + done.stderr
    assert h.node.config.queries == ['a red cup', 'the door handle']


def test_queries_mode_publishes_queries_and_no_captions(harness):
    h = harness(mode='queries', queries=['a red cup'])
    found = h.listen(QUERIES, Detection2DArray)
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    caps = h.listen('cam/image_raw/kosmos/caption', Caption)
    stream(h, found, 2)
    assert not dets and not caps
    # Back to both at runtime: captions come again beside the queries.
    result = h.node.set_parameters([Parameter('mode', value='both')])[0]
    assert result.successful
    stream(h, caps, 1, sec0=200)


def test_a_camera_listened_to_only_for_queries_is_subscribed(harness):
    h = harness(queries=['a red cup'])
    assert not h.camera().subscribed, 'lazy: nobody listens yet'
    found = h.listen(QUERIES, Detection2DArray)
    assert wait_for(lambda: h.camera().subscribed)
    stream(h, found, 1)


def test_min_score_holds_back_weaker_boxes_on_every_topic(harness):
    h = harness(queries=['a red cup'])
    found = h.listen(QUERIES, Detection2DArray)
    dets = h.listen('cam/image_raw/kosmos/detections', Detection2DArray)
    vocab = label_info(h)
    assert wait_for(lambda: vocab) and vocab[-1].threshold == 0.0
    stream(h, found, 1)
    stream(h, dets, 1)
    scores = [d.results[0].hypothesis.score
              for m in found + dets for d in m.detections]
    assert scores, 'the tiny model grounds boxes at min_score 0'
    above = max(scores) * 1.5  # over every box this scene gives
    assert h.node.set_parameters([Parameter('min_score', value=above)])[
        0].successful
    assert wait_for(lambda: vocab[-1].threshold == pytest.approx(above))
    count = (len(found), len(dets))
    stream(h, found, count[0] + 2, sec0=200)
    stream(h, dets, count[1] + 2, sec0=300)
    for msg in found[count[0] + 1:] + dets[count[1] + 1:]:
        assert msg.detections == [], 'published, without the weaker boxes'
    refused = h.node.set_parameters([Parameter('min_score', value=1.5)])[0]
    assert not refused.successful and 'min_score' in refused.reason
    h.node.set_parameters([Parameter('min_score', value=0.0)])
    before = len(dets)
    stream(h, dets, before + 2, sec0=400)
    assert dets[-1].detections, 'back at 0 every box goes out again'
