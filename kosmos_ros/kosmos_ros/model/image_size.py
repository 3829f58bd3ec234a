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
Image dimensions read from a PNG or JPEG header, before anything decodes.

A few hundred bytes can claim a 100000x100000 image: OpenCV then raises, or
allocates gigabytes before its own limit refuses. Reading the size first
lets the caller refuse such data for the price of parsing a header.
"""

import struct

from .preprocess import ImageError

_PNG = b'\x89PNG\r\n\x1a\n'
# JPEG start-of-frame markers (baseline, progressive, lossless, ...).
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def encoded_size(data):
    """
    Return (width, height) claimed by PNG or JPEG ``data``, else None.

    None means the format is not recognised or the header is cut short;
    the decoder then decides.
    """
    data = bytes(data[:1 << 16]) if len(data) > 1 << 16 else bytes(data)
    if data.startswith(_PNG) and len(data) >= 24 and data[12:16] == b'IHDR':
        return struct.unpack('>II', data[16:24])
    if data.startswith(b'\xff\xd8'):
        return _jpeg_size(data)
    return None


def check_encoded(data, max_pixels, name='compressed image'):
    """Refuse encoded data too big for ``max_pixels``; raise ImageError."""
    if len(data) > max_pixels * 3:
        raise ImageError('%s of %d bytes exceeds the %d-pixel limit'
                         % (name, len(data), max_pixels))
    size = encoded_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError('%s claims %dx%d pixels, more than the %d-pixel '
                         'limit' % (name, size[0], size[1], max_pixels))


def _jpeg_size(data):
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2  # markers without a length
            continue
        (length,) = struct.unpack('>H', data[pos + 2:pos + 4])
        if marker in _SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack('>HH', data[pos + 5:pos + 9])
            return width, height
        if length < 2:
            return None
        pos += 2 + length
    return None
