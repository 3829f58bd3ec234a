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
One camera of kosmos_node: its outputs, gated subscriptions, its frames.

Lazy subscription without the unsubscribe race. rclpy's executor decides a
subscription is ready, then takes its message later on a pool thread; a
subscription destroyed in between makes the take raise ``InvalidHandle``
(the node dies, or the callback group stays locked for good). So a camera
never destroys its subscription from outside: ``want(False)`` only closes a
gate, and the subscription's own callback - the one context in which no
other take for it can be pending, since each subscription has its own
mutually exclusive group - drops the frame and destroys the subscription.
A camera nobody feeds keeps a closed, idle subscription that costs nothing.
A camera's depth image and CameraInfo (3D positions) are gated alike.

The subscription has no QoS event handlers: Humble adds them to the node as
waitables, and the executor builds its next wait set (taking the list of
waitables while the group is still free) concurrently with the callback; a
handler destroyed in between raised ``InvalidHandle`` from
``add_to_wait_set`` and ended the spin (seen 1 run in 5 at 500 Hz). Without
them, nothing of a retired subscription is left for the executor to touch.
"""

from concurrent.futures import Future
import threading
import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo

from ..model.questions import RequestError
from ..pipeline.health import CameraHealth
from ..pipeline.tracking import Tracker
from ..spatial.pairing import Pairing

HOLD_SECONDS = 30.0  # a service call keeps a lazy camera subscribed this long


def output_base(resolved_topic):
    """Where a camera's outputs go: next to its (resolved) input topic."""
    suffix = '/compressed'
    return resolved_topic[:-len(suffix)] if resolved_topic.endswith(suffix) \
        else resolved_topic


def camera_info_topic(image_topic):
    """Return the CameraInfo topic beside an image topic (image_transport)."""
    return image_topic.rsplit('/', 1)[0] + '/camera_info' \
        if '/' in image_topic else 'camera_info'


def stamp_seconds(header):
    """Return a header's stamp in seconds."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


class GatedSubscription:
    """One topic's subscription behind a gate; see the module docstring."""

    def __init__(self, node, kind, topic, on_message, on_retire=None):
        self.node = node
        self.kind = kind
        self.topic = topic
        self.resolved = node.resolve_topic_name(topic)
        self.subscription = None
        self._on_message = on_message
        self._on_retire = on_retire or (lambda: None)
        self._open = False
        self._lock = threading.Lock()

    @property
    def subscribed(self):
        """Whether messages are being taken (the gate is open)."""
        return self._open and self.subscription is not None

    def want(self, wanted, qos_mode='auto'):
        """Open (subscribing if needed) or close the gate."""
        with self._lock:
            self._open = bool(wanted)
            if not wanted or self.subscription is not None:
                return
            holder = []
            holder.append(self.node.create_subscription(
                self.kind, self.topic,
                lambda msg: self._receive(msg, holder[0]),
                image_qos(self.node, self.topic, qos_mode),
                callback_group=MutuallyExclusiveCallbackGroup(),
                event_callbacks=SubscriptionEventCallbacks(
                    use_default_callbacks=False)))
            self.subscription = holder[0]
        self.node.get_logger().info('subscribed to %s' % self.resolved)

    def _receive(self, msg, subscription):
        with self._lock:
            current = subscription is self.subscription
            deliver = self._open and current
            if not deliver:
                if current:
                    self.subscription = None
                # Our own callback: no take of this subscription is pending.
                self.node.destroy_subscription(subscription)
        if deliver:
            self._on_message(msg)
        elif current:
            self.node.get_logger().info(
                'unsubscribed from %s (no listeners)' % self.resolved)
            self._on_retire()


class DepthInput:
    """A camera's aligned depth image and its CameraInfo, for pairing."""

    def __init__(self, node, topic):
        self.image = GatedSubscription(node, Image, topic, self._on_depth,
                                       self.clear)
        self.info = GatedSubscription(node, CameraInfo,
                                      camera_info_topic(topic), self._on_info)
        self._pairing = Pairing()
        self.camera_info = None  # latest; intrinsics do not change

    def want(self, wanted, qos_mode):
        """Open or close both gates."""
        self.image.want(wanted, qos_mode)
        self.info.want(wanted, qos_mode)

    def _on_depth(self, msg):
        self._pairing.depth(stamp_seconds(msg.header), msg)

    def _on_info(self, msg):
        self.camera_info = msg

    def colour(self, stamp):
        """Note a colour frame's stamp: it keeps the nearest depth frame."""
        self._pairing.colour(stamp)

    def partner(self, stamp, slop):
        """Return the depth frame paired with a colour stamp, and why not."""
        return self._pairing.partner(stamp, slop)

    def clear(self):
        """Forget the depth frames (unsubscribed)."""
        self._pairing.clear()


class Camera:
    """An image topic: publishers, gated subscriptions, latest frame."""

    def __init__(self, node, topic, on_frame, publish_annotated=True,
                 health=None, track_max_age=2.0, track_min_iou=0.2,
                 qos_mode='auto', depth_topic='', publish_markers=True):
        """
        Create the camera's publishers; subscribe later with ``want``.

        ``on_frame(camera, msg)`` hears every frame that passes the gate.
        ``depth_topic`` (optional) adds 3D outputs, and RViz markers of
        them with ``publish_markers``.
        """
        from kosmos_ros_interfaces.msg import Caption
        self.node = node
        self.topic = topic  # as configured (the scheduler's key)
        self.compressed = topic.endswith('/compressed')
        self.image = GatedSubscription(
            node, CompressedImage if self.compressed else Image, topic,
            self._on_image, self._on_retire)
        self.resolved = self.image.resolved  # after remapping
        self.qos_mode = qos_mode
        self.health = health or CameraHealth()
        base = output_base(self.resolved)
        self.detections = node.create_publisher(
            Detection2DArray, base + '/kosmos/detections', 10)
        self.caption = node.create_publisher(
            Caption, base + '/kosmos/caption', 10)
        self.annotated = node.create_publisher(
            Image, base + '/kosmos/annotated', 1) if publish_annotated \
            else None
        self.queries = node.create_publisher(
            Detection2DArray, base + '/kosmos/queries', 10)
        # The vocabulary of the queries topic: latched for late joiners.
        self.label_info = node.create_publisher(
            LabelInfo, base + '/kosmos/queries/label_info', QoSProfile(
                depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                reliability=ReliabilityPolicy.RELIABLE))
        self.depth = DepthInput(node, depth_topic) if depth_topic else None
        self.health.depth = self.depth is not None
        self.detections_3d = self.queries_3d = self.markers = None
        if self.depth is not None and publish_markers:
            from visualization_msgs.msg import MarkerArray
            self.markers = node.create_publisher(
                MarkerArray, base + '/kosmos/markers', 10)
        if self.depth is not None:
            self.detections_3d = node.create_publisher(
                Detection3DArray, base + '/kosmos/detections_3d', 10)
            self.queries_3d = node.create_publisher(
                Detection3DArray, base + '/kosmos/queries_3d', 10)
        # Track ids per output: caption phrases match when normalised, a
        # standing query only itself.
        self._trackers = {
            'captions': Tracker(track_max_age, track_min_iou),
            'queries': Tracker(track_max_age, track_min_iou, key=str)}
        self.outputs = [p for p in (
            self.detections, self.caption, self.queries, self.annotated,
            self.detections_3d, self.queries_3d, self.markers)
            if p is not None]
        self.latest = None  # newest message, for the services
        self._encoded = (None, None)  # (message, its vision encoding)
        self.hold_until = 0.0
        self._on_frame = on_frame
        self._waiters = []
        self._lock = threading.Lock()

    @property
    def subscription(self):
        """Give the image subscription, None while unsubscribed."""
        return self.image.subscription

    @property
    def subscribed(self):
        """Whether frames are being taken (the gate is open)."""
        return self.image.subscribed

    def names(self):
        """Names a service request may use for this camera."""
        return {self.topic, self.resolved}

    def listeners(self):
        """Count the subscribers to any of this camera's outputs."""
        return sum(p.get_subscription_count() for p in self.outputs)

    def set_tracking(self, max_age, min_iou):
        """Take new track_max_age and track_min_iou values."""
        for tracker in self._trackers.values():
            tracker.max_age, tracker.min_iou = max_age, min_iou

    def track(self, output, labelled, stamp):
        """Return the track ids of an output's (label, box) list at a stamp."""
        return self._trackers[output].update(
            [(label, box.xyxy()) for label, box in labelled], stamp)

    def remember_encoding(self, msg, embeds):
        """Keep a captioned frame's vision encoding for questions about it."""
        self._encoded = (msg, embeds)

    def encoding_of(self, msg):
        """Return ``msg``'s kept vision encoding, or None (encode afresh)."""
        kept, embeds = self._encoded
        return embeds if kept is msg else None

    def want(self, wanted):
        """Open (subscribing if needed) or close the gates."""
        self.image.want(wanted, self.qos_mode)
        if self.depth is not None:
            self.depth.want(wanted, self.qos_mode)

    def _on_image(self, msg):
        with self._lock:
            self.latest = msg
            waiters, self._waiters = self._waiters, []
        self.health.frames_in.tick()
        if self.depth is not None:
            self.depth.colour(stamp_seconds(msg.header))
        for waiter in waiters:
            if waiter.set_running_or_notify_cancel():
                waiter.set_result(msg)
        self._on_frame(self, msg)

    def _on_retire(self):
        with self._lock:
            self.latest = None

    def next_frame(self):
        """Return a Future completed with the next frame through the gate."""
        future = Future()
        with self._lock:
            self._waiters.append(future)
        return future

    def hold(self, seconds=HOLD_SECONDS):
        """Keep the camera subscribed for a service call, lazy or not."""
        self.hold_until = time.monotonic() + seconds
        self.want(True)

    def held(self):
        """Whether a recent service call keeps this camera subscribed."""
        return time.monotonic() < self.hold_until

    def close(self):
        """Close the gates and drop the publishers (the node cleans up)."""
        self.want(False)
        with self._lock:
            self.latest = None
            self._encoded = (None, None)
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.cancel()
        for publisher in self.outputs + [self.label_info]:
            self.node.destroy_publisher(publisher)
        self.outputs = []


def image_qos(node, topic, mode):
    """Return the QoS of a camera subscription: depth 1, ``mode``."""
    if mode == 'auto':
        # A best-effort subscription matches every publisher, a reliable one
        # gets every frame of reliable publishers: choose per topic.
        infos = node.get_publishers_info_by_topic(node.resolve_topic_name(
            topic))
        best_effort = not infos or any(
            i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
            for i in infos)
    else:
        best_effort = mode == 'best_effort'
    return QoSProfile(depth=1, reliability=(
        ReliabilityPolicy.BEST_EFFORT if best_effort
        else ReliabilityPolicy.RELIABLE))


class Cameras(dict):
    """A node's cameras by configured topic, and what they do together."""

    @classmethod
    def configure(cls, node, config, on_frame, health):
        """Make the cameras of a Config; ``health``: CameraHealth by topic."""
        depth = config.depth_topics or [''] * len(config.image_topics)
        return cls((topic, Camera(
            node, topic, on_frame, config.publish_annotated, health[topic],
            config.track_max_age, config.track_min_iou, config.image_qos,
            depth_topic, config.publish_markers))
            for topic, depth_topic in zip(config.image_topics, depth))

    def want(self, wanted):
        """Open or close every camera's gates."""
        for camera in self.values():
            camera.want(wanted)

    def find(self, name):
        """Return the camera a request names (configured or resolved name)."""
        if not name:
            return next(iter(self.values()))
        for camera in self.values():
            if name in camera.names():
                return camera
        raise RequestError('unknown camera %r; cameras: %s' % (
            name, ', '.join(c.resolved for c in self.values())))

    def gate(self, active, lazy, set_captioned):
        """
        Open cameras someone listens to (or all, not lazy); close the rest.

        A camera held by a service call stays open but is not captioned;
        ``set_captioned(topic, bool)`` tells the worker which are.
        """
        for camera in list(self.values()):
            captioned = active and (not lazy or camera.listeners() > 0)
            camera.want(captioned or (active and camera.held()))
            set_captioned(camera.topic, captioned)

    def forget_encodings(self):
        """Drop the kept vision encodings (the model is being freed)."""
        for camera in self.values():
            camera.remember_encoding(None, None)

    def close(self):
        """Close every camera (gates and publishers) and forget them."""
        for camera in self.values():
            camera.close()
        self.clear()
