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
3D position and size of a grounded box from an aligned depth image (no ROS).

Everything is in the depth camera's optical frame (x right, y down, z
forward, metres); a depth pixel holds z, not the range along the ray.

Pixels. ``CameraModel.rays(u, v)`` takes OpenCV / image_geometry pixel
coordinates: the centre of pixel column ``i`` is ``u = i`` and the image spans
``[-0.5, width - 0.5]``. A Kosmos-2 box is normalised to the image's extent,
so its edge ``x`` is ``u = x * width - 0.5``, and a pixel belongs to a box
when its centre lies inside. The box maps onto a depth image of any
resolution with the colour image's field of view, so depth may be smaller
than colour; only the depth image must match its own CameraInfo's size.

Distortion. The box corners and centre are undistorted before they become
rays: 'plumb_bob' and 'rational_polynomial' by OpenCV's fixed-point
iteration (as ``cv2.undistortPoints``, run to convergence), 'equidistant' by
Newton's method on the fisheye angle (as ``cv2.fisheye.undistortPoints``).
A point whose result does not distort back onto itself gets a NaN ray. D
all zero (or empty) is a pinhole camera whatever the model's name.

Depth of the object (``foreground_depths``). A Kosmos-2 box snaps outward to
a 32x32 grid and often includes a cell of background on each side, so 30-60%
of its pixels can be wall or floor. Hence: (1) only the central ``shrink``
(default half) of the box in each direction is sampled: the background sits
at the border, and the centre of the box is on the object whenever the
object fills half its box; (2) of those depths the nearest dense cluster is
taken: a histogram of log depth (bins ``bin_width`` = 3% wide, three times a
typical 1% sensor noise) is searched from near to far for the first bin
holding at least ``min_share`` (10%) of the valid pixels, grown over its
neighbours that hold at least a quarter of that, and the cluster's median is
the object's depth. The median of the box lands on the wall once background
is half of it (and the shrink alone does not save a small far object, whose
central half is still mostly wall); a low percentile is biased near by its
own rank (-1.28 noise sigma for the 10th) and to the near edge of a slanted
face; the cluster ignores scattered speckle (no 10% bin), and on a flat face
it is within a fraction of the noise, on a slanted or round one the median
of the visible surface sampled. Fewer than ``min_valid`` valid pixels, or no
dense bin, is 'no_valid_depth'.

Position and size (``locate_box``). The centre is the box centre's ray at
that depth: a point on the visible surface (a depth camera cannot see the
back, so the volumetric centre is up to half the object's depth further).
The box centre, not the centroid of the cluster's pixels, because the
centroid follows whatever else shares the object's depth (the floor it
stands on, a neighbour), while the box centre's error is bounded by the
grid: each box edge snaps outward by between 0 and 1 cell, so the box
centre is within half a cell (``width / 64`` pixels) of the footprint's,
``z * width / (64 * fx)`` metres: 2.7 cm at 1.4 m for 640 pixels and
fx = 525. Size x and y are the extent of the box's undistorted corner and
edge-midpoint rays at that depth (so up to two cells too big, two more for
a box enlarged by a cell); size z is the 10-90% spread of the cluster's
depths: the visible depth extent, a lower bound (noise included).
"""

import dataclasses
import math

import numpy as np

ENCODINGS = ('16UC1', '32FC1')
DISTORTION_MODELS = {'plumb_bob': 5, 'rational_polynomial': 8, 'equidistant': 4}
REASONS = ('bad_camera_info', 'size_mismatch', 'empty_box', 'no_valid_depth')


def depth_to_metres(array, encoding, scale=0.001, min_depth=0.1, max_depth=20.0):
    """
    Convert a depth image to float32 metres, NaN where invalid.

    '16UC1' holds integers of ``scale`` metres (millimetres by default),
    '32FC1' holds metres. 0, NaN, inf and depths outside [min_depth,
    max_depth] are invalid.
    """
    if encoding == '16UC1':
        metres = (np.asarray(array, dtype=np.float64) * scale).astype(np.float32)
    elif encoding == '32FC1':
        metres = np.array(array, dtype=np.float32)
    else:
        raise ValueError('unsupported depth encoding %r: use one of %s'
                         % (encoding, ', '.join(ENCODINGS)))
    with np.errstate(invalid='ignore'):
        valid = (metres > 0) & (metres >= min_depth) & (metres <= max_depth)
    metres[~valid] = np.nan
    return metres


@dataclasses.dataclass(frozen=True)
class CameraModel:
    """Intrinsics and distortion of the depth camera, from its CameraInfo."""

    k: tuple
    d: tuple
    distortion_model: str
    width: int
    height: int

    def __post_init__(self):
        k = np.asarray(self.k, dtype=float).reshape(-1)
        if k.size != 9 or not np.all(np.isfinite(k)):
            raise ValueError('K must be 9 finite numbers, got %r' % (self.k,))
        if not (k[0] > 0 and k[4] > 0):
            raise ValueError('fx and fy must be > 0 (uncalibrated camera?), got %g, %g'
                             % (k[0], k[4]))
        if not (self.width > 0 and self.height > 0):
            raise ValueError('width and height must be > 0, got %r x %r'
                             % (self.width, self.height))
        d = np.asarray(self.d, dtype=float).reshape(-1)
        if not np.all(np.isfinite(d)):
            raise ValueError('D must be finite, got %r' % (self.d,))
        if np.any(d != 0):
            size = DISTORTION_MODELS.get(self.distortion_model)
            if size is None:
                raise ValueError('unsupported distortion model %r: use one of %s (or D all zero)'
                                 % (self.distortion_model, ', '.join(DISTORTION_MODELS)))
            if np.any(d[size:] != 0):
                raise ValueError('%s takes %d coefficients, D has more: %r'
                                 % (self.distortion_model, size, self.d))

    @classmethod
    def from_camera_info_fields(cls, k, d, distortion_model, width, height):
        """Build from CameraInfo's k, d, distortion_model, width, height; ValueError if bad."""
        return cls(tuple(float(x) for x in np.asarray(k).reshape(-1)),
                   tuple(float(x) for x in np.asarray(d).reshape(-1)),
                   str(distortion_model), int(width), int(height))

    def _coefficients(self):
        d = np.asarray(self.d, dtype=float).reshape(-1)
        if not np.any(d != 0):
            return 'pinhole', ()
        size = DISTORTION_MODELS[self.distortion_model]
        return self.distortion_model, tuple(np.pad(d, (0, 8))[:size])

    def distort(self, x, y):
        """Apply the distortion model to normalised undistorted (x, y)."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        model, c = self._coefficients()
        if model == 'pinhole':
            return x, y
        r2 = x * x + y * y
        if model == 'equidistant':
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1 + t2 * (c[0] + t2 * (c[1] + t2 * (c[2] + t2 * c[3]))))
            with np.errstate(invalid='ignore', divide='ignore'):
                scale = np.where(r > 1e-12, theta_d / r, 1.0)
            return x * scale, y * scale
        k1, k2, p1, p2, k3 = c[:5]
        k4, k5, k6 = c[5:] if len(c) == 8 else (0.0, 0.0, 0.0)
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)

    def project(self, x, y):
        """Map normalised undistorted (x, y) to pixel coordinates (u, v)."""
        k = self.k
        xd, yd = self.distort(x, y)
        return k[0] * xd + k[1] * yd + k[2], k[4] * yd + k[5]

    def rays(self, u, v):
        """Map pixel coordinates to normalised undistorted (x/z, y/z); NaN where it fails."""
        k = self.k
        yd = (np.asarray(v, dtype=float) - k[5]) / k[4]
        xd = (np.asarray(u, dtype=float) - k[2] - k[1] * yd) / k[0]
        model, c = self._coefficients()
        if model == 'pinhole':
            return xd, yd
        if model == 'equidistant':
            theta_d = np.minimum(np.hypot(xd, yd), math.pi / 2)
            theta = theta_d.copy()
            for _ in range(50):
                t2 = theta * theta
                f = theta * (1 + t2 * (c[0] + t2 * (c[1] + t2 * (c[2] + t2 * c[3])))) - theta_d
                df = 1 + t2 * (3 * c[0] + t2 * (5 * c[1] + t2 * (7 * c[2] + t2 * 9 * c[3])))
                theta = theta - f / df
            with np.errstate(invalid='ignore', divide='ignore'):
                scale = np.where(theta_d > 1e-12, np.tan(theta) / theta_d, 1.0)
                scale = np.where((theta < 0) | (theta >= math.pi / 2), np.nan, scale)
            x, y = xd * scale, yd * scale
        else:
            k1, k2, p1, p2, k3 = c[:5]
            k4, k5, k6 = c[5:] if len(c) == 8 else (0.0, 0.0, 0.0)
            x, y = xd, yd
            with np.errstate(all='ignore'):
                for _ in range(200):
                    r2 = x * x + y * y
                    inverse = ((1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
                               / (1 + r2 * (k1 + r2 * (k2 + r2 * k3))))
                    new_x = (xd - 2 * p1 * x * y - p2 * (r2 + 2 * x * x)) * inverse
                    new_y = (yd - p1 * (r2 + 2 * y * y) - 2 * p2 * x * y) * inverse
                    change = np.nanmax(np.abs([new_x - x, new_y - y]), initial=0)
                    x, y = new_x, new_y
                    if not change > 1e-15:
                        break
        back_x, back_y = self.distort(x, y)
        with np.errstate(invalid='ignore'):
            bad = ~(np.hypot(back_x - xd, back_y - yd) < 1e-9)
        return np.where(bad, np.nan, x), np.where(bad, np.nan, y)


def camera_model(k, d, distortion_model, width, height):
    """Return a CameraModel, or a Failure('bad_camera_info') saying why not."""
    try:
        return CameraModel.from_camera_info_fields(k, d, distortion_model, width, height)
    except (TypeError, ValueError) as err:
        return Failure('bad_camera_info', str(err))


@dataclasses.dataclass(frozen=True)
class Location:
    """
    A box located in 3D: centre and size (x, y, z) in metres, optical frame.

    The box is axis-aligned there (``orientation`` identity) until it is
    moved to another frame (``rigid.transform_pose``).

    ``depth`` is the object's visible surface (the centre's z);
    ``valid_pixels`` counts the valid depths sampled in the box's centre,
    ``used_pixels`` those of the foreground cluster the depth came from.
    """

    centre: tuple
    size: tuple
    depth: float
    valid_pixels: int
    used_pixels: int
    orientation: tuple = (0.0, 0.0, 0.0, 1.0)  # of the box, (x, y, z, w)


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a box was not located: ``reason`` is one of REASONS, ``detail`` says more."""

    reason: str
    detail: str = ''


def foreground_depths(depths, min_valid=10, min_share=0.1, bin_width=0.03):
    """
    Return the nearest dense cluster of the valid depths, or a Failure.

    Bins are ``bin_width`` wide in log depth; the cluster is the nearest bin
    with ``min_share`` of the pixels (and 3 pixels), grown over neighbours
    holding a quarter of that. Fewer than ``min_valid`` pixels, or no such
    bin, is a Failure('no_valid_depth').
    """
    depths = np.asarray(depths, dtype=float).reshape(-1)
    depths = depths[np.isfinite(depths) & (depths > 0)]
    if depths.size < max(min_valid, 1):
        return Failure('no_valid_depth', '%d valid depth pixels, need %d'
                       % (depths.size, min_valid))
    log_d = np.log(depths)
    bins = np.floor((log_d - log_d.min()) / math.log1p(bin_width)).astype(int)
    counts = np.bincount(bins)
    need = max(min_share * depths.size, min(min_valid, 3))
    dense = np.flatnonzero(counts >= need)
    if dense.size == 0:
        return Failure('no_valid_depth', 'no depth cluster holds %d%% of %d valid pixels'
                       % (round(100 * min_share), depths.size))
    lo = hi = dense[0]
    while lo > 0 and counts[lo - 1] >= need / 4:
        lo -= 1
    while hi + 1 < counts.size and counts[hi + 1] >= need / 4:
        hi += 1
    return depths[(bins >= lo) & (bins <= hi)]


def _pixel_span(a, b, n):
    """Pixels whose centre lies in the normalised span [a, b]; else the one at its middle."""
    first = max(math.ceil(a * n - 0.5), 0)
    last = min(math.floor(b * n - 0.5), n - 1)
    if last < first:
        first = last = min(max(math.floor((a + b) / 2 * n), 0), n - 1)
    return slice(first, last + 1)


def locate_box(box, depth_m, camera, shrink=0.5, min_valid=10, min_share=0.1,
               bin_width=0.03):
    """
    Locate a normalised (x1, y1, x2, y2) box in 3D, or say why not.

    ``depth_m`` is float metres with NaN where invalid (``depth_to_metres``),
    of the camera's (height, width). ``camera`` is a CameraModel, or a
    Failure from ``camera_model``, which is returned as it is (so a caller
    counts one failure per box). Returns a Location or a Failure whose
    reason is 'bad_camera_info' (also for a box beyond where the distortion
    model can be inverted), 'size_mismatch', 'empty_box' (fewer than 4
    numbers, NaN, or no area inside [0, 1]) or 'no_valid_depth'.
    """
    if isinstance(camera, Failure):
        return camera
    depth_m = np.asarray(depth_m)
    if depth_m.shape != (camera.height, camera.width):
        return Failure('size_mismatch', 'depth image is %s, camera info %dx%d'
                       % ('x'.join(map(str, depth_m.shape[::-1])), camera.width, camera.height))
    try:
        x1, y1, x2, y2 = (min(max(float(c), 0.0), 1.0) for c in box)
    except (TypeError, ValueError):
        return Failure('empty_box', 'box must be 4 numbers, got %r' % (box,))
    if not (x2 > x1 and y2 > y1):
        return Failure('empty_box', 'box %r is empty inside the image' % (tuple(box),))
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    hx, hy = (x2 - x1) * shrink / 2, (y2 - y1) * shrink / 2
    patch = depth_m[_pixel_span(my - hy, my + hy, camera.height),
                    _pixel_span(mx - hx, mx + hx, camera.width)]
    valid = patch[np.isfinite(patch) & (patch > 0)]
    cluster = foreground_depths(valid, min_valid, min_share, bin_width)
    if isinstance(cluster, Failure):
        return cluster
    z = float(np.median(cluster))
    xs = np.array([x1, mx, x2, x1, mx, x2, x1, x2, mx])
    ys = np.array([y1, y1, y1, y2, y2, y2, my, my, my])
    rx, ry = camera.rays(xs * camera.width - 0.5, ys * camera.height - 0.5)
    if not (np.all(np.isfinite(rx)) and np.all(np.isfinite(ry))):
        return Failure('bad_camera_info', 'box %r is outside the range of the distortion model'
                       % (tuple(box),))
    low, high = np.percentile(cluster, [10, 90])
    return Location(centre=(float(rx[-1]) * z, float(ry[-1]) * z, z),
                    size=(float(np.ptp(rx[:-1])) * z, float(np.ptp(ry[:-1])) * z,
                          float(high - low)),
                    depth=z, valid_pixels=int(valid.size), used_pixels=int(cluster.size))
