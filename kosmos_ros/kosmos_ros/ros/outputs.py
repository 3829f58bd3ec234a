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
What a frame's results become on a camera's topics, in one place.

The worker hands each captioned frame to ``frame``; Ask/Locate (and any
later front end over the same worker) turn an answer's boxes into messages
with ``boxes``, so both publish the same Detection2DArray and, for a camera
with depth, the same Detection3DArray. Every message carries the source
frame's header. The 3D part (TF listener and ``positions``) exists only
when depth topics are configured, and so do the RViz markers of the 3D
boxes (made only while someone subscribes).
"""

from . import conversions, markers
from .cameras import stamp_seconds


class Outputs:
    """Publishes results for a node's cameras; owns the 3D locator."""

    def __init__(self, node, depth=False):
        """Make the publisher side; with ``depth``, listen to TF too."""
        self.node = node
        self.spatial = None  # positions.Spatial, for cameras with depth
        self._tf_listener = None
        if depth:
            from tf2_ros import Buffer, TransformListener
            from .positions import Spatial
            buffer = Buffer()
            self._tf_listener = TransformListener(buffer, node)
            self.spatial = Spatial(node, buffer)

    def close(self):
        """Stop listening to TF."""
        if self._tf_listener is not None:
            self._tf_listener.unregister()
        self._tf_listener = self.spatial = None

    def frame(self, camera, msg, image, bgr, result):
        """Publish one captioned frame's results (worker thread)."""
        camera.remember_encoding(msg, result.embeds)  # questions reuse it
        least = self.node.config.min_score  # below it, on no output
        header = msg.header
        size = (image.shape[1], image.shape[0])
        depth = self._depth(camera, header)
        if result.caption is not None:
            self._publish_boxes(camera, 'captions', header, size, depth,
                                conversions.caption_boxes(result.caption,
                                                          least))
            camera.caption.publish(conversions.caption_msg(header,
                                                           result.caption))
        if result.queries:
            self._publish_boxes(camera, 'queries', header, size, depth,
                                conversions.query_boxes(result.queries,
                                                        least))
        if result.caption is not None and camera.annotated is not None and \
                camera.annotated.get_subscription_count() > 0:
            from ..pipeline.annotate import annotate
            camera.annotated.publish(conversions.frame_to_image_msg(
                header, annotate(image, result.caption, bgr, least), bgr))

    def boxes(self, camera, header, size, labelled, ids=None, depth=None):
        """
        Return (Detection2DArray, Detection3DArray or None) of labelled boxes.

        ``labelled``: (class_id, PixelBox) pairs of an image of ``size``
        (width, height) with ``header``; 3D only for a camera with depth
        (``camera`` None: an image sent with the request, no depth).
        ``depth`` is the frame's prepared depth when the caller has it.
        ``ids`` are the boxes' track ids.
        """
        flat = conversions.detections_msg(header, labelled, ids)
        if depth is None:
            depth = self._depth(camera, header)
        if depth is None:
            return flat, None
        return flat, self.spatial.locate(camera, depth, labelled, size, ids)

    def label_info(self, cameras, config):
        """Latch the standing queries' vocabulary and threshold on each."""
        msg = conversions.label_info_msg(self.node.get_clock().now().to_msg(),
                                         config.queries, config.min_score)
        for camera in cameras:
            camera.label_info.publish(msg)

    def _publish_boxes(self, camera, output, header, size, depth, labelled):
        """Publish 2D boxes with track ids, and in 3D where there is depth."""
        ids = camera.track(output, labelled, stamp_seconds(header))
        flat, located = self.boxes(camera, header, size, labelled, ids, depth)
        captions = output == 'captions'
        (camera.detections if captions else camera.queries).publish(flat)
        if located is not None:
            (camera.detections_3d if captions else
             camera.queries_3d).publish(located)
            if camera.markers is not None and \
                    camera.markers.get_subscription_count() > 0:
                camera.markers.publish(markers.markers_msg(
                    located, output, self.node.config.marker_lifetime))

    def _depth(self, camera, header):
        """Prepare the frame's depth once for all its boxes; None: no depth."""
        if camera is None or camera.depth is None or self.spatial is None:
            return None
        return self.spatial.prepare(camera, header)
