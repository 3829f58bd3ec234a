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
Grounded boxes of a camera frame to Detection3DArray: depth, CameraInfo, TF.

The ROS side of 3D positions; the math is ``depth`` (estimation and camera
model), ``pairing`` (which depth frame) and ``rigid`` (TF), all ROS-free.
Per colour frame: the paired depth frame and the latest CameraInfo are
converted once, then each box is located; a box that cannot be is left out
and its reason counted in the camera's health. Reasons beyond ``depth``'s:
'no_depth_frame', 'no_camera_info', 'bad_depth_image', 'no_transform', and
'internal_error' (a bug of ours: logged, and the 2D outputs still go out).
"""

import dataclasses

from rclpy.time import Time
from tf2_ros import TransformException

from . import conversions
from .cameras import stamp_seconds
from ..model.preprocess import ImageError
from ..spatial import depth
from ..spatial.rigid import transform_pose


@dataclasses.dataclass
class FrameDepth:
    """One colour frame's depth, ready for its boxes (or why not)."""

    header: object = None  # of the 3D outputs
    metres: object = None
    camera: object = None  # depth.CameraModel
    transform: object = None  # (translation, rotation) to target_frame
    failure: tuple = None  # (reason, why) for every box


class Spatial:
    """Locates a camera's grounded boxes in 3D for the node."""

    def __init__(self, node, tf_buffer):
        self.node = node
        self.tf_buffer = tf_buffer
        self._models = {}  # topic -> (CameraInfo, CameraModel or Failure)

    def prepare(self, camera, header):
        """Pair, convert and transform once per colour frame."""
        try:
            return self._prepare(camera, header)
        except Exception as error:  # never cost the frame its 2D outputs
            self.node.get_logger().error(
                '3D positions for %s failed: %r' % (camera.resolved, error),
                throttle_duration_sec=5.0)
            return FrameDepth(failure=('internal_error', repr(error)))

    def _prepare(self, camera, header):
        config = self.node.config
        source, why = camera.depth.partner(stamp_seconds(header),
                                           config.depth_slop)
        if source is None:
            return FrameDepth(failure=('no_depth_frame', why))
        info = camera.depth.camera_info
        if info is None:
            return FrameDepth(failure=('no_camera_info', 'no CameraInfo on '
                                       '%s' % camera.depth.info.resolved))
        model = self._model(camera, info)
        if isinstance(model, depth.Failure):
            return FrameDepth(failure=(model.reason, model.detail))
        try:
            metres = depth.depth_to_metres(
                conversions.depth_to_array(source, config.max_image_pixels),
                source.encoding, config.depth_scale, config.depth_min,
                config.depth_max)
        except (ImageError, ValueError) as error:
            return FrameDepth(failure=('bad_depth_image', str(error)))
        out = conversions.header_like(header, source.header.frame_id)
        transform = None
        target = config.target_frame
        if target and target != out.frame_id:
            try:
                tf = self.tf_buffer.lookup_transform(
                    target, out.frame_id, Time.from_msg(header.stamp)).transform
            except TransformException as error:
                why = 'no transform from %s to %s: %s' % (
                    out.frame_id, target, error)
                self.node.get_logger().warning(why, throttle_duration_sec=5.0)
                return FrameDepth(failure=('no_transform', why))
            transform = ((tf.translation.x, tf.translation.y,
                          tf.translation.z),
                         (tf.rotation.x, tf.rotation.y, tf.rotation.z,
                          tf.rotation.w))
            out.frame_id = target
        return FrameDepth(out, metres, model, transform)

    def locate(self, camera, frame, labelled, size, ids=None):
        """
        Return the Detection3DArray of (class_id, PixelBox) boxes, or None.

        ``size`` is the colour image's (width, height); ``ids`` the boxes'
        track ids. None when the frame has no depth at all (then every box
        is counted as not located), or on a bug of ours (logged).
        """
        try:
            return self._locate(camera, frame, labelled, size, ids)
        except Exception as error:  # never cost the frame its 2D outputs
            self.node.get_logger().error(
                '3D positions for %s failed: %r' % (camera.resolved, error),
                throttle_duration_sec=5.0)
            return None

    def _locate(self, camera, frame, labelled, size, ids):
        width, height = size
        located, failures = [], []
        for k, (label, box) in enumerate(labelled):
            if frame.failure is not None:
                failures.append(frame.failure)
                continue
            try:
                where = depth.locate_box(
                    (box.x1 / width, box.y1 / height, box.x2 / width,
                     box.y2 / height), frame.metres, frame.camera)
            except Exception as error:  # counted; the other boxes go on
                where = depth.Failure('internal_error', repr(error))
            if isinstance(where, depth.Failure):
                failures.append((where.reason, where.detail))
                continue
            if frame.transform is not None:
                centre, orientation = transform_pose(
                    *frame.transform, where.centre, where.orientation)
                where = dataclasses.replace(where, centre=centre,
                                            orientation=orientation)
            located.append((label, box.score,
                            ids[k] if ids is not None else None, where))
        camera.health.depth_result(len(located), failures)
        if frame.failure is not None:
            return None
        return conversions.detections_3d_msg(frame.header, located)

    def _model(self, camera, info):
        cached = self._models.get(camera.topic)
        if cached is None or cached[0] is not info:
            cached = (info, depth.camera_model(
                info.k, info.d, info.distortion_model, info.width,
                info.height))
            self._models[camera.topic] = cached
        return cached[1]
