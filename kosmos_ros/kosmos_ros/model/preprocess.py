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
(size, mean, std) are read once and the frame is resized by torch's
antialiased bicubic on uint8 - the filter PIL applies, vectorised - straight
from the camera buffer (no copy, no colour conversion at full size). Channel
swap and normalisation happen on the 224x224 result.
"""

import warnings

import numpy as np
import torch

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

    def __init__(self, image_processor, max_pixels=0):
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
        self.max_pixels = max_pixels
        mean = np.asarray(cfg.image_mean, dtype=np.float32)
        std = np.asarray(cfg.image_std, dtype=np.float32)
        scale = float(cfg.rescale_factor) if cfg.do_rescale else 1.0
        if not cfg.do_normalize:
            mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
        # (x * scale - mean) / std == x * gain + bias, per channel.
        self._gain = torch.from_numpy(scale / std).view(3, 1, 1)
        self._bias = torch.from_numpy(-mean / std).view(3, 1, 1)

    def resize(self, frame):
        """Resize an HxWx3 uint8 frame to a 3xHxW uint8 tensor."""
        width, height = self.size
        if frame.flags.writeable:
            chw = torch.from_numpy(frame)
        else:  # a message buffer: torch warns, but we only read it
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', UserWarning)
                chw = torch.from_numpy(frame)
        chw = chw.permute(2, 0, 1)[None]  # a view, no copy
        return torch.nn.functional.interpolate(
            chw, size=(height, width), mode='bicubic', antialias=True)[0]

    def __call__(self, frames, bgr=False):
        """
        Return a float32 tensor of shape (N, 3, H, W) for a list of frames.

        ``bgr`` says the frames are in OpenCV's BGR order; the swap is done on
        the small image.
        """
        out = torch.empty((len(frames), 3, self.size[1], self.size[0]),
                          dtype=torch.float32)
        for i, frame in enumerate(frames):
            check_frame(frame, self.max_pixels)
            small = self.resize(np.ascontiguousarray(frame))
            if bgr:
                small = small.flip(0)
            torch.addcmul(self._bias, small.float(), self._gain, out=out[i])
        return out
