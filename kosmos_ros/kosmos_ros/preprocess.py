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
Camera frame to Kosmos-2 pixel values, without the HF processor's overhead.

The reference path (PIL image -> ``processor(images=...)``) converts, validates
and normalises in float64 on every call. Here the checkpoint's own settings
(size, mean, std) are read once, the frame is halved with an exact 2x2 box
filter while it stays at least twice the model size, and PIL's antialiased
bicubic - the filter the checkpoint was trained with - finishes the resize
on the small image (PIL's own ``reducing_gap`` technique, done faster).
Channel swap and normalisation happen on the 224x224 result in float32, so a
BGR camera frame costs no full-size conversion.
"""

import cv2
import numpy as np
from PIL import Image

# PIL resample codes as stored in preprocessor configs.
_BICUBIC = 3


class ImageError(ValueError):
    """A frame that cannot be used as model input."""


def check_frame(frame, max_pixels=None):
    """Check that ``frame`` is an HxWx3 uint8 array; raise ImageError if not."""
    if not isinstance(frame, np.ndarray):
        raise ImageError('frame must be a numpy array, got %s' %
                         type(frame).__name__)
    if frame.dtype != np.uint8:
        raise ImageError('frame must be uint8, got %s' % frame.dtype)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ImageError('frame must be HxWx3, got shape %s' %
                         (frame.shape,))
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ImageError('frame is empty (%dx%d)' % frame.shape[1::-1])
    if max_pixels and frame.shape[0] * frame.shape[1] > max_pixels:
        raise ImageError('frame %dx%d exceeds the %d-pixel limit' % (
            frame.shape[1], frame.shape[0], max_pixels))


class Preprocessor:
    """Turn HxWx3 uint8 frames into the pixel tensor a checkpoint expects."""

    def __init__(self, image_processor, reducing_gap=2.0):
        cfg = image_processor
        size = getattr(cfg, 'size', None) or {}
        height, width = size.get('height'), size.get('width')
        if height is None or width is None:
            raise ValueError(
                'fast preprocessing needs a checkpoint that resizes to a fixed '
                'height x width (Kosmos-2 does); got size=%r' % (size,))
        crop = getattr(cfg, 'crop_size', None) or {}
        if getattr(cfg, 'do_center_crop', False) and (
                crop.get('height'), crop.get('width')) != (height, width):
            raise ValueError('a centre crop after the resize is not supported')
        if getattr(cfg, 'resample', _BICUBIC) != _BICUBIC:
            raise ValueError('only bicubic resampling is supported')
        self.size = (int(width), int(height))
        self.reducing_gap = reducing_gap
        mean = np.asarray(cfg.image_mean, dtype=np.float32)
        std = np.asarray(cfg.image_std, dtype=np.float32)
        scale = float(cfg.rescale_factor) if cfg.do_rescale else 1.0
        if not cfg.do_normalize:
            mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
        # (x * scale - mean) / std == x * gain + bias, per channel.
        self._gain = (scale / std).astype(np.float32)
        self._bias = (-mean / std).astype(np.float32)

    def resize(self, frame):
        """Resize an HxWx3 uint8 frame to the model size (uint8)."""
        width, height = self.size
        small = frame
        # Halve each axis while it stays reducing_gap times above the target:
        # INTER_LINEAR at exactly 1/2 is the exact 2x2 box average, and fast.
        while True:
            src_h, src_w = small.shape[:2]
            half_w = src_w // 2 if src_w >= 2 * self.reducing_gap * width \
                else src_w
            half_h = src_h // 2 if src_h >= 2 * self.reducing_gap * height \
                else src_h
            if (half_w, half_h) == (src_w, src_h):
                break
            # An odd side cannot halve exactly: INTER_AREA then averages
            # fractional pixels, keeping the geometry (slower, rare sizes).
            exact = (half_w == src_w or src_w % 2 == 0) and \
                (half_h == src_h or src_h % 2 == 0)
            small = cv2.resize(small, (half_w, half_h), interpolation=(
                cv2.INTER_LINEAR if exact else cv2.INTER_AREA))
        image = Image.fromarray(np.ascontiguousarray(small))
        return np.asarray(image.resize((width, height), Image.BICUBIC))

    def __call__(self, frames, bgr=False):
        """
        Return a float32 array of shape (N, 3, H, W) for a list of frames.

        ``bgr`` says the frames are in OpenCV's BGR order; the swap is done on
        the small image.
        """
        out = np.empty((len(frames), 3, self.size[1], self.size[0]),
                       dtype=np.float32)
        for i, frame in enumerate(frames):
            check_frame(frame)
            small = self.resize(frame)
            if bgr:
                small = small[:, :, ::-1]
            chw = small.transpose(2, 0, 1).astype(np.float32)
            out[i] = chw * self._gain[:, None, None] + self._bias[:, None, None]
        return out
