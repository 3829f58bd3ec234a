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
ROS messages to frames and grounded results to ROS messages.

Kept out of the node so the callbacks stay short, and out of the core
because it needs the ROS message packages and cv_bridge.
"""

from cv_bridge import CvBridge
import numpy as np
from vision_msgs.msg import (Detection2D, Detection2DArray, Detection3D,
                             Detection3DArray, LabelInfo,
                             ObjectHypothesisWithPose, VisionClass)

from ..model.image_size import check_encoded
from ..model.preprocess import ImageError

# encoding -> (channels, whether the 3-channel result is BGR)
_ENCODINGS = {
    'rgb8': (3, False), 'bgr8': (3, True), 'rgba8': (4, False),
    'bgra8': (4, True), 'mono8': (1, False),
}

_bridge = CvBridge()


def image_to_frame(msg, max_pixels=0):
    """
    Convert sensor_msgs/Image or CompressedImage to (HxWx3 uint8, is_bgr).

    Raises ImageError with the reason for anything unusable: unsupported
    encoding, a step or data size that does not match, an empty or too
    large image (compressed: the size its header claims, before decoding),
    or compressed data that does not decode. The frame's shape and pixel
    limit are checked once more, with the model input, by the Preprocessor.
    """
    if hasattr(msg, 'format'):  # CompressedImage
        if max_pixels:
            check_encoded(msg.data, max_pixels)
        try:
            frame = _bridge.compressed_imgmsg_to_cv2(msg, 'bgr8')
        except Exception as error:  # cv2.error, CvBridgeError, ...
            raise ImageError('cannot decode %r compressed image: %s'
                             % (msg.format, error)) from error
        if frame is None or frame.ndim != 3:
            raise ImageError('cannot decode %r compressed image' % msg.format)
        return frame, True
    if msg.encoding not in _ENCODINGS:
        raise ImageError('unsupported encoding %r (use one of %s)' % (
            msg.encoding, ', '.join(sorted(_ENCODINGS))))
    channels, bgr = _ENCODINGS[msg.encoding]
    if msg.width == 0 or msg.height == 0:
        raise ImageError('image is empty (%dx%d)' % (msg.width, msg.height))
    if max_pixels and msg.width * msg.height > max_pixels:
        raise ImageError('image %dx%d exceeds the %d-pixel limit'
                         % (msg.width, msg.height, max_pixels))
    if msg.step < msg.width * channels or \
            len(msg.data) != msg.step * msg.height:
        raise ImageError(
            'step/size mismatch: %dx%d %s needs step >= %d and %d bytes, got '
            'step %d and %d bytes' % (msg.width, msg.height, msg.encoding,
                                      msg.width * channels,
                                      msg.step * msg.height, msg.step,
                                      len(msg.data)))
    try:
        frame = _bridge.imgmsg_to_cv2(msg, 'passthrough')
    except Exception as error:  # CvBridgeError, ValueError, TypeError, ...
        raise ImageError('cannot convert image: %s' % error) from error
    if channels == 1:
        frame = np.repeat(frame.reshape(msg.height, msg.width, 1), 3, axis=2)
    elif channels == 4:
        frame = frame[:, :, :3]
    return np.ascontiguousarray(frame), bgr


def caption_boxes(result, min_score=0.0):
    """(class_id, PixelBox) of a result's boxes: the phrase each grounds."""
    return [(box.phrase, box) for box in result.boxes()
            if box.score >= min_score]


def query_boxes(found, min_score=0.0):
    """(class_id, PixelBox) of standing query results: the query as given."""
    return [(query, box) for query, result in found
            for entity in result.entities for box in entity.boxes
            if box.score >= min_score]


_DEPTH_BYTES = {'16UC1': 2, '32FC1': 4}


def depth_to_array(msg, max_pixels=0):
    """
    Convert a depth Image (16UC1 or 32FC1) to an HxW array, unscaled.

    Raises ImageError for another encoding, an empty or too large image, or
    a step or data size that does not match (checked before conversion).
    """
    size = _DEPTH_BYTES.get(msg.encoding)
    if size is None:
        raise ImageError('unsupported depth encoding %r (use 16UC1 or 32FC1)'
                         % msg.encoding)
    if msg.width == 0 or msg.height == 0:
        raise ImageError('depth image is empty (%dx%d)' % (msg.width,
                                                           msg.height))
    if max_pixels and msg.width * msg.height > max_pixels:
        raise ImageError('depth image %dx%d exceeds the %d-pixel limit'
                         % (msg.width, msg.height, max_pixels))
    if msg.step < msg.width * size or len(msg.data) != msg.step * msg.height:
        raise ImageError('depth step/size mismatch: %dx%d %s needs step >= '
                         '%d and %d bytes, got step %d and %d bytes' % (
                             msg.width, msg.height, msg.encoding,
                             msg.width * size, msg.step * msg.height,
                             msg.step, len(msg.data)))
    try:
        return _bridge.imgmsg_to_cv2(msg, 'passthrough')
    except Exception as error:  # CvBridgeError, ValueError, TypeError, ...
        raise ImageError('cannot convert depth image: %s' % error) from error


def detections_msg(header, labelled, ids=None):
    """
    Build a Detection2DArray: one Detection2D per (class_id, PixelBox).

    ``ids`` (track ids, one per box) fill ``Detection2D.id``.
    """
    out = Detection2DArray(header=header)
    for k, (label, box) in enumerate(labelled):
        det = Detection2D(header=header)
        if ids is not None:
            det.id = str(ids[k])
        det.bbox.center.position.x = (box.x1 + box.x2) / 2.0
        det.bbox.center.position.y = (box.y1 + box.y2) / 2.0
        det.bbox.size_x = box.x2 - box.x1
        det.bbox.size_y = box.y2 - box.y1
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = label
        hyp.hypothesis.score = float(box.score)
        det.results.append(hyp)
        out.detections.append(det)
    return out


def detections_3d_msg(header, located):
    """
    Build a Detection3DArray of (class_id, score, track id, Location).

    The box is axis-aligned in ``header.frame_id`` (its pose: the Location's
    centre and orientation; size x, y, z).
    """
    out = Detection3DArray(header=header)
    for label, score, track, where in located:
        det = Detection3D(header=header)
        if track is not None:
            det.id = str(track)
        position = det.bbox.center.position
        position.x, position.y, position.z = where.centre
        q = det.bbox.center.orientation
        q.x, q.y, q.z, q.w = where.orientation
        det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = where.size
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = label
        hyp.hypothesis.score = float(score)
        hyp.pose.pose = det.bbox.center
        det.results.append(hyp)
        out.detections.append(det)
    return out


def label_info_msg(stamp, queries, threshold=0.0):
    """
    Build the LabelInfo of the standing queries.

    ``class_map`` numbers the queries in order; the detections carry the
    query itself as ``class_id`` (vision_msgs' class_id is a string there),
    so a consumer matches on ``class_name``. ``threshold`` is the least
    score a published detection has (the ``min_score`` parameter).
    """
    msg = LabelInfo(threshold=float(threshold))
    msg.header.stamp = stamp
    msg.class_map = [VisionClass(class_id=k, class_name=query)
                     for k, query in enumerate(queries)]
    return msg


def caption_msg(header, result):
    """Build the Caption message of a result."""
    from kosmos_ros_interfaces.msg import Caption
    return Caption(
        header=header, text=result.text,
        phrases=[e.phrase for e in result.entities],
        phrase_starts=[int(e.span[0]) for e in result.entities],
        phrase_ends=[int(e.span[1]) for e in result.entities],
        num_tokens=int(result.num_tokens))


def header_like(header, frame_id):
    """Return a copy of ``header`` in another frame (the same stamp)."""
    from std_msgs.msg import Header
    return Header(stamp=header.stamp, frame_id=frame_id)


def frame_to_image_msg(header, frame, bgr):
    """Build an Image message (rgb8 or bgr8) of an HxWx3 frame."""
    msg = _bridge.cv2_to_imgmsg(np.ascontiguousarray(frame),
                                encoding='bgr8' if bgr else 'rgb8')
    msg.header = header
    return msg
