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
"""Synthetic depth scenes with known geometry come back at the right place."""

import math

from kosmos_ros.spatial.depth import (camera_model, CameraModel, depth_to_metres,
                                      Failure, foreground_depths, locate_box,
                                      Location)
import numpy as np
import pytest

W, H, F, GRID, NOISE, WALL = 640, 480, 525.0, 32, 0.01, 3.0
K = (F, 0.0, 319.5, 0.0, F, 239.5, 0.0, 0.0, 1.0)
PLUMB_BOB = (-0.3, 0.12, 0.001, -0.0015, -0.02)


def pinhole(k=K, width=W, height=H):
    return CameraModel.from_camera_info_fields(k, (), 'plumb_bob', width, height)


def distort(x, y, d=PLUMB_BOB):
    """Apply OpenCV's plumb_bob forward model, written out here to check depth.py."""
    k1, k2, p1, p2, k3 = d
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def hit_box(x, y, centre, size, yaw=0.0):
    """Z of rays (x, y, 1) on a box turned by yaw about y; inf where missed."""
    c, s = math.cos(yaw), math.sin(yaw)
    origin = [-(c * centre[0] - s * centre[2]), -centre[1], -(s * centre[0] + c * centre[2])]
    direction = [c * x - s, y, s * x + c]
    near, far = np.full(x.shape, -np.inf), np.full(x.shape, np.inf)
    with np.errstate(divide='ignore', invalid='ignore'):
        for o, d, half in zip(origin, direction, np.divide(size, 2)):
            t1, t2 = (-half - o) / d, (half - o) / d
            near, far = np.maximum(near, np.minimum(t1, t2)), np.minimum(far, np.maximum(t1, t2))
    return np.where((near <= far) & (near > 0), near, np.inf)


def hit_sphere(x, y, centre, radius):
    b = x * centre[0] + y * centre[1] + centre[2]
    a = x * x + y * y + 1
    disc = b * b - a * (np.dot(centre, centre) - radius ** 2)
    return np.where(disc >= 0, (b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)


def render(hit, d=None, k=K, width=W, height=H, seed=0, holes=0.05, speckle=0.0):
    """Clean depth, object mask and noisy depth (1% noise, holes, speckle) of hit+wall."""
    if d is None:  # ray through each pixel centre
        u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
        clean = np.minimum(hit((u - k[2]) / k[0], (v - k[5]) / k[4]), WALL)
    else:  # splat a 2x-denser grid of rays through the forward model, nearest pixel
        x, y = np.meshgrid(np.arange(-0.9, 0.9, 0.5 / F), np.arange(-0.7, 0.7, 0.5 / F))
        xd, yd = distort(x, y, d)
        col, row = np.rint(F * xd + k[2]).astype(int), np.rint(F * yd + k[5]).astype(int)
        keep = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        clean = np.full((height, width), np.nan)
        clean[row[keep], col[keep]] = np.minimum(hit(x, y), WALL)[keep]
    rng = np.random.default_rng(seed)
    noisy = clean * (1 + NOISE * rng.standard_normal(clean.shape))
    spots = rng.random(clean.shape)
    noisy[spots < speckle] = rng.uniform(0.3, WALL, clean.shape)[spots < speckle]
    noisy[spots > 1 - holes] = np.nan
    return clean, clean < WALL, noisy.astype(np.float32)


def kosmos_box(mask, enlarge=0):
    """Footprint of the mask snapped outward to the grid, enlarged by cells."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    edges = [cols[0] / mask.shape[1], rows[0] / mask.shape[0],
             (cols[-1] + 1) / mask.shape[1], (rows[-1] + 1) / mask.shape[0]]
    lo = [max(math.floor(e * GRID) - enlarge, 0) / GRID for e in edges[:2]]
    hi = [min(math.ceil(e * GRID) + enlarge, GRID) / GRID for e in edges[2:]]
    return tuple(lo + hi), edges


def central(box, array, shrink=0.5):
    """Array's pixels whose centres lie in the central shrink of the box."""
    h, w = array.shape
    (x1, y1, x2, y2), u, v = box, np.arange(w) + 0.5, np.arange(h) + 0.5
    mx, my, hx, hy = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * shrink / 2, (y2 - y1) * shrink / 2
    inside_u, inside_v = np.abs(u / w - mx) <= hx, np.abs(v / h - my) <= hy
    return array[np.ix_(inside_v, inside_u)]


def tolerances(edges, target, surface, extent_z, d=(0.0,) * 5):
    """
    Lateral and depth tolerances derived from the grid, the noise and the scene.

    Snapping moves each box edge outward by 0 to 1 cell (an enlarged box by
    one more on both sides), so the box centre is within half a cell of the
    footprint's centre: W / 64 = 10 px across, H / 64 = 7.5 px down. The
    footprint's centre is off the object centre's image by the perspective of
    its visible sides (measured from the clean render), plus half a pixel of
    rasterisation. e pixels of angle are Z * e / fx metres at depth Z. The
    depth is a median of hundreds of pixels with 1% noise (standard error
    1.25 sigma / sqrt(n) < 0.1 sigma), so it is within dz = 1 sigma of the
    sampled surface's depths, trimming of the cluster's tails included. The
    centre lies on the visible surface, up to extent_z / 2 before the
    object's centre, which moves it laterally by ray * (extent_z / 2 + dz).
    """
    z = float(np.max(surface))
    dz = NOISE * z
    centre_px = [(edges[0] + edges[2]) / 2 * W - 0.5, (edges[1] + edges[3]) / 2 * H - 0.5]
    xd, yd = distort(target[0] / target[2], target[1] / target[2], d)
    truth_px = [F * xd + K[2], F * yd + K[5]]
    lateral = []
    for axis, cell in ((0, W / GRID), (1, H / GRID)):
        pixels = cell / 2 + abs(centre_px[axis] - truth_px[axis]) + 0.5
        lateral.append(z * pixels / F + abs(target[axis] / target[2]) * (extent_z / 2 + dz))
    return lateral, dz


def check(result, target, lateral, surface, dz, extent_z):
    assert isinstance(result, Location), result
    for axis in (0, 1):
        assert abs(result.centre[axis] - target[axis]) <= lateral[axis], (axis, result, lateral)
    assert np.min(surface) - dz <= result.depth <= np.max(surface) + dz, (result, dz)
    assert abs(result.centre[2] - target[2]) <= extent_z / 2 + dz
    assert 0 < result.size[2] <= extent_z + 2 * dz


def sampled_surface(box, clean, mask):
    """Clean depths of the object's pixels in the central half of the box."""
    surface = central(box, np.where(mask, clean, np.nan))
    return surface[np.isfinite(surface)]


SLANT = math.radians(45)
SCENES = {  # ray-cast function, true centre, true depth extent
    'box': (lambda x, y: hit_box(x, y, (0.2, -0.1, 1.5), (0.3, 0.2, 0.2)), (0.2, -0.1, 1.5), 0.2),
    'small far box': (lambda x, y: hit_box(x, y, (-0.3, 0.1, 2.0), (0.08, 0.1, 0.08)),
                      (-0.3, 0.1, 2.0), 0.08),
    'sphere': (lambda x, y: hit_sphere(x, y, (0.1, 0.05, 1.5), 0.15), (0.1, 0.05, 1.5), 0.3),
    'slanted face': (lambda x, y: hit_box(x, y, (-0.2, 0.1, 1.6), (0.4, 0.25, 0.05), SLANT),
                     (-0.2, 0.1, 1.6), 0.4 * math.sin(SLANT) + 0.05 * math.cos(SLANT)),
}


@pytest.mark.parametrize('enlarge', [0, 1])
@pytest.mark.parametrize('name', SCENES)
def test_a_scene_comes_back_within_the_grid_tolerance(name, enlarge):
    hit, target, extent_z = SCENES[name]
    clean, mask, noisy = render(hit, speckle=0.02)
    box, edges = kosmos_box(mask, enlarge)
    surface = sampled_surface(box, clean, mask)
    lateral, dz = tolerances(edges, target, surface, extent_z)
    result = locate_box(box, noisy, pinhole())
    check(result, target, lateral, surface, dz, extent_z)
    # Size x spans the footprint plus the snapping: up to 2 (4 if enlarged) cells.
    footprint = (edges[2] - edges[0]) * W / F * result.depth
    slack = 2 * (1 + enlarge) * (W / GRID) / F * result.depth
    assert footprint - 1e-6 <= result.size[0] <= footprint + slack + 1e-6


def test_background_pulls_the_median_away_but_not_the_nearest_cluster():
    # The box in front of the wall, its Kosmos box enlarged by a cell: 30-60% wall.
    clean, mask, noisy = render(SCENES['box'][0], speckle=0.02)
    box, _ = kosmos_box(mask, enlarge=1)
    assert 0.3 <= 1 - central(box, mask, shrink=1.0).mean() <= 0.6
    front, dz = 1.4, NOISE * 1.4
    result = locate_box(box, noisy, pinhole())
    assert abs(result.depth - front) <= dz
    assert abs(np.nanmedian(central(box, noisy, shrink=1.0)) - front) > 1.0  # the wall
    # A low percentile is biased by its own rank: p10 of 1% noise is -1.28 sigma.
    assert np.nanpercentile(central(box, noisy), 10) < front - dz
    # A small far object: its box's central half is still mostly wall, so the
    # shrink alone is not enough; the median of what it samples is the wall.
    hit, target, _ = SCENES['small far box']
    clean, mask, noisy = render(hit, speckle=0.02)
    box, _ = kosmos_box(mask, enlarge=1)
    assert np.nanmedian(central(box, noisy)) > 2.5
    assert abs(locate_box(box, noisy, pinhole()).depth - 1.96) <= NOISE * 1.96


def to_16uc1(metres, scale):
    return np.rint(np.nan_to_num(metres, nan=0.0) / scale).astype(np.uint16)


def test_both_encodings_and_scales_give_the_same_answer():
    clean, mask, noisy = render(SCENES['box'][0])
    box, _ = kosmos_box(mask)
    results = [locate_box(box, depth_to_metres(noisy, '32FC1'), pinhole()),
               locate_box(box, depth_to_metres(to_16uc1(noisy, 0.001), '16UC1'), pinhole()),
               locate_box(box, depth_to_metres(to_16uc1(noisy, 1e-4), '16UC1', 1e-4), pinhole())]
    for result in results[1:]:  # within the 1 mm quantisation
        assert np.allclose(result.centre, results[0].centre, atol=1e-3), result
        assert np.allclose(result.size, results[0].size, atol=2e-3), result


def test_invalid_depths_are_nan():
    metres = depth_to_metres([[0, np.nan, np.inf, -1.0, 0.05, 25.0, 1.5]], '32FC1')
    assert metres.dtype == np.float32
    assert np.isnan(metres[0, :6]).all() and metres[0, 6] == 1.5
    raw = np.array([[0, 50, 1500, 30000, 65535]], dtype=np.uint16)
    assert np.isnan(depth_to_metres(raw, '16UC1')[0, [0, 1, 3, 4]]).all()
    assert depth_to_metres(raw, '16UC1')[0, 2] == np.float32(1.5)
    assert not np.isnan(depth_to_metres(raw, '16UC1', max_depth=70.0)[0, 4])
    with pytest.raises(ValueError, match='16UC1, 32FC1'):
        depth_to_metres(raw, 'mono16')


def test_holes_are_ignored_and_an_empty_or_sparse_box_has_no_depth():
    clean, mask, noisy = render(SCENES['box'][0], holes=0.6)
    box, _ = kosmos_box(mask)
    assert abs(locate_box(box, noisy, pinhole()).depth - 1.4) <= NOISE * 1.4
    assert locate_box(box, np.full((H, W), np.nan), pinhole()).reason == 'no_valid_depth'
    sparse = np.full((H, W), np.nan, dtype=np.float32)
    sparse[240, 320:325] = 1.0  # five valid pixels, fewer than min_valid
    failure = locate_box((0.4, 0.4, 0.6, 0.6), sparse, pinhole())
    assert failure == Failure('no_valid_depth', '5 valid depth pixels, need 10')
    assert foreground_depths(np.linspace(1.0, 9.0, 50)).reason == 'no_valid_depth'  # no dense bin


def test_bad_inputs_have_their_reasons():
    depth = np.full((H, W), 1.0, dtype=np.float32)
    assert locate_box((0.4, 0.4, 0.6, 0.6), depth[::2, ::2], pinhole()).reason == 'size_mismatch'
    for box in [(0.5, 0.5, 0.5, 0.6), (0.6, 0.4, 0.4, 0.6), (1.1, 0.0, 1.3, 1.0),
                (float('nan'), 0.0, 0.5, 0.5), (0.1, 0.2), None]:
        assert locate_box(box, depth, pinhole()).reason == 'empty_box', box
    tiny = locate_box((0.5, 0.5, 0.5001, 0.5001), depth, pinhole(), min_valid=1)
    assert tiny.used_pixels == 1 and tiny.centre[2] == 1.0  # the pixel at its centre
    for k, d, model, width, match in [
            ((0.0,) + K[1:], (), 'plumb_bob', W, 'fx and fy'),
            ((np.nan,) + K[1:], (), 'plumb_bob', W, 'finite'),
            (K, (), 'plumb_bob', 0, 'width and height'),
            (K, (0.1, 0, 0, 0), 'kannala_brandt_xyz', W, 'unsupported distortion model'),
            (K, (0.1, 0, 0, 0, 0, 0.2), 'plumb_bob', W, 'takes 5')]:
        with pytest.raises(ValueError, match=match):
            CameraModel.from_camera_info_fields(k, d, model, width, H)
        failure = camera_model(k, d, model, width, H)
        assert failure.reason == 'bad_camera_info' and match in failure.detail
        assert locate_box((0.4, 0.4, 0.6, 0.6), depth, failure) is failure
    assert camera_model(K, (0.0,) * 5, '', W, H).rays(319.5, 0.0) == (0.0, -239.5 / F)


def test_a_smaller_depth_image_gives_the_same_answer():
    hit, target, extent_z = SCENES['box']
    clean, mask, noisy = render(hit)
    box, edges = kosmos_box(mask)
    full = locate_box(box, noisy, pinhole())
    small_k = (F / 2, 0.0, 159.5, 0.0, F / 2, 119.5, 0.0, 0.0, 1.0)  # c' = (c + 0.5) / 2 - 0.5
    clean, small_mask, noisy = render(hit, k=small_k, width=W // 2, height=H // 2)
    half = locate_box(box, noisy, pinhole(small_k, W // 2, H // 2))
    surface = sampled_surface(box, clean, small_mask)
    lateral, dz = tolerances(edges, target, surface, extent_z)
    check(half, target, lateral, surface, dz, extent_z)
    assert np.allclose(half.centre, full.centre, atol=NOISE * 1.4)
    assert np.allclose(half.size[:2], full.size[:2], rtol=NOISE)


def test_undistortion_recovers_a_distorted_scene_and_is_needed():
    centre, size = (0.75, 0.55, 1.5), (0.25, 0.2, 0.02)  # a thin panel near a corner
    camera = CameraModel.from_camera_info_fields(K, PLUMB_BOB, 'plumb_bob', W, H)
    clean, mask, noisy = render(lambda x, y: hit_box(x, y, centre, size), PLUMB_BOB)
    box, edges = kosmos_box(mask, enlarge=1)
    surface = sampled_surface(box, clean, mask)
    lateral, dz = tolerances(edges, centre, surface, size[2], PLUMB_BOB)
    result = locate_box(box, noisy, camera)
    check(result, centre, lateral, surface, dz, size[2])
    ignored = locate_box(box, noisy, pinhole())
    assert all(abs(ignored.centre[a] - centre[a]) > lateral[a] for a in (0, 1))  # 9.7, 6.0 cm


def pixel_grid():  # every 8th pixel edge, the image's corners included
    u, v = np.meshgrid(np.linspace(-0.5, W - 0.5, 81), np.linspace(-0.5, H - 0.5, 61))
    return u.ravel(), v.ravel()


def test_undistortion_round_trips_within_a_thousandth_of_a_pixel():
    camera = CameraModel.from_camera_info_fields(K, PLUMB_BOB, 'plumb_bob', W, H)
    u, v = pixel_grid()
    x, y = camera.rays(u, v)
    xd, yd = distort(x, y)  # this file's forward model, not depth.py's
    assert np.max(np.hypot(F * xd + K[2] - u, F * yd + K[5] - v)) < 1e-3
    assert np.max(np.hypot(*np.subtract(camera.project(x, y), (u, v)))) < 1e-3
    assert np.max(np.abs(np.subtract(camera.rays(319.5, 239.5), 0.0))) < 1e-12


@pytest.mark.parametrize('model, d', [
    ('plumb_bob', PLUMB_BOB),
    ('rational_polynomial', (0.8, -0.1, 0.001, -0.001, 0.02, 1.1, 0.1, 0.05)),
    ('equidistant', (-0.05, 0.01, -0.003, 0.0005))])
def test_undistortion_matches_opencv(model, d):
    cv2 = pytest.importorskip('cv2')
    u, v = pixel_grid()
    x, y = CameraModel.from_camera_info_fields(K, d, model, W, H).rays(u, v)
    points, k = np.stack([u, v], -1).reshape(-1, 1, 2), np.reshape(K, (3, 3))
    if model == 'equidistant':
        expected = cv2.fisheye.undistortPoints(points, k, np.array(d))
    else:
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
        if hasattr(cv2, 'undistortPointsIter'):  # OpenCV 4
            expected = cv2.undistortPointsIter(points, k, np.array(d), None, None, criteria)
        else:  # OpenCV 5 folded the criteria into undistortPoints
            expected = cv2.undistortPoints(points, k, np.array(d), criteria=criteria)
    assert np.max(np.abs(np.stack([x, y], -1) - expected.reshape(-1, 2))) * F < 1e-3
