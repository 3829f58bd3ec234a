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
One peer of a secured kosmos_node, for test_security: a process of its own.

Its identity comes from the environment (ROS_SECURITY_*) and --enclave, as
a robot's process would get it. It tries what it is told to and prints one
JSON line per outcome: detections heard (by the frame_id of the frame they
answer), frames published, an Ask answered or not, a parameter set or not.
"""

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.utilities import remove_ros_args


def say(**what):
    """Print one outcome as a JSON line."""
    print(json.dumps(what), flush=True)


def frame_msg(frame_id):
    """Return a small random rgb8 Image stamped with ``frame_id``."""
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3),
                                              dtype=np.uint8)
    return Image(height=120, width=160, encoding='rgb8', step=480,
                 data=frame.tobytes(), header=Header(frame_id=frame_id))


def main():
    """Do what the arguments say, for as long as they say."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--node', required=True, help='e.g. /sec/kosmos')
    parser.add_argument('--camera', required=True, help='its image topic')
    parser.add_argument('--name', required=True, help='frame_id and name')
    parser.add_argument('--listen', type=float, default=0.0)
    parser.add_argument('--publish', type=float, default=0.0)
    parser.add_argument('--ask', action='store_true')
    parser.add_argument('--set-parameter', action='store_true')
    parser.add_argument('--wait', type=float, default=10.0)
    args = parser.parse_args(remove_ros_args(sys.argv)[1:])
    rclpy.init(args=sys.argv)
    node = rclpy.create_node('peer_' + args.name)
    if args.listen:
        from vision_msgs.msg import Detection2DArray
        node.create_subscription(
            Detection2DArray, args.camera + '/kosmos/detections',
            lambda msg: say(detection=msg.header.frame_id), 10)
    say(started=args.name)
    if args.publish:
        try:
            from sensor_msgs.msg import Image
            pub = node.create_publisher(Image, args.camera,
                                        qos_profile_sensor_data)
        except Exception as error:  # noqa: B902 (rmw's own error types)
            say(publisher='refused: %s' % error)
        else:
            sent, end = 0, time.monotonic() + args.publish
            while time.monotonic() < end:
                pub.publish(frame_msg(args.name))
                sent += 1
                rclpy.spin_once(node, timeout_sec=0.2)
            say(published=sent)
    if args.ask:
        from kosmos_ros_interfaces.srv import Ask
        say(ask=call(node, Ask, args.node + '/ask', Ask.Request(
            question='What is it?',
            max_new_tokens=4), args.wait))
    if args.set_parameter:
        from rcl_interfaces.srv import SetParameters
        request = SetParameters.Request(parameters=[Parameter(
            'min_score', value=0.25).to_parameter_msg()])
        say(set_parameter=call(node, SetParameters,
                               args.node + '/set_parameters', request,
                               args.wait))
    end = time.monotonic() + args.listen
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()


def call(node, kind, name, request, wait):
    """Call a service: 'unreachable', 'unanswered', or what it answered."""
    try:
        client = node.create_client(kind, name)
    except Exception as error:  # noqa: B902 (rmw's own error types)
        return 'refused: %s' % error
    if not client.wait_for_service(timeout_sec=wait):
        return 'unreachable'
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=wait)
    if not future.done():
        return 'unanswered'
    response = future.result()
    if hasattr(response, 'success'):
        return 'answered: %s' % ('ok' if response.success
                                 else response.message)
    return 'answered: %s' % ('ok' if all(r.successful for r in
                                         response.results) else 'refused')


if __name__ == '__main__':
    main()
