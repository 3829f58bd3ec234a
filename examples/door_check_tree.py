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
Behaviour-tree example: find "the door" with Kosmos-2, then ask if it is open.

Built on py_trees (the library under py_trees_ros) and rclpy. Each service
call is a non-blocking behaviour: it sends the request on its first tick and
returns RUNNING until the answer arrives, so the tree keeps ticking. A VLM
answer takes hundreds of milliseconds to seconds: give the calls a timeout of
tens of seconds (BT.ROS2's RosServiceNode defaults to server_timeout = 1 s,
which is too short; set it in its RosNodeParams).

    ros2 launch kosmos_ros kosmos.launch.py image_topics:="['/front/image_raw']"
    python3 examples/door_check_tree.py --camera /front/image_raw
"""

import argparse
import time

import py_trees
import rclpy


class KosmosCall(py_trees.behaviour.Behaviour):
    """Call a kosmos_ros service without blocking the tree."""

    def __init__(self, name, node, srv_type, srv_name, make_request,
                 on_response, timeout=30.0):
        super().__init__(name)
        self.client = node.create_client(srv_type, srv_name)
        self.make_request = make_request
        self.on_response = on_response
        self.timeout = timeout
        self.future = None

    def initialise(self):
        self.future, self.started = None, time.monotonic()

    def update(self):
        if time.monotonic() - self.started > self.timeout:
            self.feedback_message = 'timed out after %.0f s' % self.timeout
            return py_trees.common.Status.FAILURE
        if self.future is None:
            if not self.client.service_is_ready():
                self.feedback_message = 'waiting for %s' % (
                    self.client.srv_name)
                return py_trees.common.Status.RUNNING
            self.future = self.client.call_async(self.make_request())
        if not self.future.done():
            return py_trees.common.Status.RUNNING
        response = self.future.result()
        self.feedback_message = response.message
        if not response.success or not self.on_response(response):
            return py_trees.common.Status.FAILURE
        return py_trees.common.Status.SUCCESS

    def terminate(self, new_status):
        if self.future is not None and not self.future.done():
            self.future.cancel()


def make_tree(node, camera='', phrase='the door',
              question='Is this door open?', timeout=30.0, prefix='/kosmos'):
    """Locate ``phrase``, then ask ``question`` about its best box."""
    from kosmos_ros_interfaces.srv import Ask, Locate
    board = py_trees.blackboard.Client(name='door_check')
    for key in ('box', 'answer'):
        board.register_key(key, access=py_trees.common.Access.WRITE)
    board.box, board.answer = None, None

    def store_box(response):
        dets = response.detections.detections
        if not dets:
            return False  # nothing grounded: the Sequence fails here
        best = max(dets, key=lambda d: d.results[0].hypothesis.score)
        c, b = best.bbox.center.position, best.bbox
        board.box = (c.x - b.size_x / 2, c.y - b.size_y / 2,
                     c.x + b.size_x / 2, c.y + b.size_y / 2)
        return True

    def ask_request():
        x1, y1, x2, y2 = board.box
        return Ask.Request(question=question, camera=camera, x1=x1, y1=y1,
                           x2=x2, y2=y2)

    def store_answer(response):
        board.answer = response.answer
        return True

    locate = KosmosCall('Locate %s' % phrase, node, Locate,
                        prefix + '/locate',
                        lambda: Locate.Request(phrase=phrase, camera=camera),
                        store_box, timeout)
    ask = KosmosCall('Ask: %s' % question, node, Ask, prefix + '/ask',
                     ask_request, store_answer, timeout)
    root = py_trees.composites.Sequence('Check the door', memory=True,
                                        children=[locate, ask])
    return py_trees.trees.BehaviourTree(root), board


def main():
    """Tick the tree until it finishes; print the answer."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--camera', default='')
    parser.add_argument('--timeout', type=float, default=30.0)
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node('door_check_tree')
    tree, board = make_tree(node, camera=args.camera, timeout=args.timeout)
    while tree.root.status not in (py_trees.common.Status.SUCCESS,
                                   py_trees.common.Status.FAILURE):
        tree.tick()
        rclpy.spin_once(node, timeout_sec=0.05)
    print(py_trees.display.unicode_tree(tree.root, show_status=True))
    print('box: %s\nanswer: %s' % (board.box, board.answer))
    node.destroy_node()
    rclpy.shutdown()


if __name__ == '__main__':
    main()
