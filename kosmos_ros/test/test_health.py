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
"""What /diagnostics says: levels and figures, computed without ROS."""

from conftest import FakeClock, png_header
from kosmos_ros.model.image_size import encoded_size
from kosmos_ros.pipeline import health
from kosmos_ros.pipeline.frames import CameraStats


def test_meter_counts_events_in_its_window():
    clock = FakeClock()
    meter = health.Meter(window=10.0, clock=clock)
    for _ in range(20):
        meter.tick()
        clock.now += 0.5
    assert meter.rate() == 2.0
    clock.now += 20
    assert meter.rate() == 0.0 and meter.total == 20


def test_throttle_allows_one_message_per_period():
    clock = FakeClock()
    throttle = health.Throttle(5.0, clock=clock)
    assert throttle.allow('a') and not throttle.allow('a')
    assert throttle.allow('b')
    clock.now += 5.0
    assert throttle.allow('a')


def camera(listeners, last_frame_ago, active=True, subscribed=True):
    clock = FakeClock()
    cam = health.CameraHealth(frames_in=health.Meter(clock=clock))
    if last_frame_ago is not None:
        clock.now -= last_frame_ago
        cam.frames_in.tick()
        clock.now += last_frame_ago
    return health.camera_status(cam, CameraStats(received=3, dropped=2),
                                listeners, subscribed, active, 5.0,
                                now=clock.now)


def test_camera_with_listeners_and_no_frames_warns():
    level, message, values = camera(1, None)
    assert level == health.WARN and 'no frames received yet' in message
    level, message, _ = camera(1, 6.0)
    assert level == health.WARN and 'no frames for 6.0 s' in message
    assert camera(1, 1.0)[0] == health.OK
    assert camera(0, None, subscribed=False)[:2] == (health.OK,
                                                     'idle: no listeners')
    assert camera(1, None, active=False)[:2] == (health.OK, 'inactive')
    assert values['frames dropped (replaced)'] == 2


def test_worker_status_levels():
    model = health.ModelHealth()
    assert health.worker_status(model, 'running', 2.0, True)[0] == health.OK
    level, message, _ = health.worker_status(model, 'dead', 2.0, True)
    assert level == health.ERROR and 'dead' in message
    assert health.worker_status(model, 'stopped', 2.0, False)[0] == \
        health.OK
    for _ in range(5):
        model.latency.add(0.8)
    level, message, values = health.worker_status(model, 'running', 2.0,
                                                  True)
    assert level == health.WARN and '0.50 s period' in message
    assert values['generation latency p50/max (s)'] == '0.800 / 0.800'
    assert health.worker_status(model, 'running', 1.0, True)[0] == health.OK
    model.restarts, model.last_crash = 1, 'Boom'
    level, message, _ = health.worker_status(model, 'running', 1.0, True)
    assert level == health.WARN and 'restarted 1' in message


def test_image_size_is_read_from_png_and_jpeg_headers():
    import cv2
    import numpy as np
    assert encoded_size(png_header(100000, 100000)) == (100000, 100000)
    frame = np.zeros((37, 53, 3), np.uint8)
    for ext in ('.png', '.jpg'):
        data = cv2.imencode(ext, frame)[1].tobytes()
        assert encoded_size(data) == (53, 37), ext
        assert encoded_size(data[:10]) is None
    assert encoded_size(b'GIF89a') is None
    assert encoded_size(b'\xff\xd8\xff\xe0\x00\x01') is None  # bad length


def test_3d_outcomes_are_counted_by_reason_and_a_frame_with_none_warns():
    clock = FakeClock()
    cam = health.CameraHealth(frames_in=health.Meter(clock=clock), depth=True)
    cam.frames_in.tick()

    def status():
        return health.camera_status(cam, CameraStats(received=1), 1, True,
                                    True, 5.0, now=clock.now)
    cam.depth_result(3, [('no_valid_depth', '4 valid depth pixels, need 10')])
    level, _, values = status()
    assert level == health.OK
    assert values['3D boxes located'] == 3
    assert values['3D boxes not located'] == 'no_valid_depth: 1'
    cam.depth_result(0, [('no_transform', 'no transform from a to b')] * 2)
    level, message, values = status()
    assert level == health.WARN
    assert message == 'no 3D positions: no_transform: no transform from a to b'
    assert values['3D boxes not located'] == \
        'no_transform: 2, no_valid_depth: 1'
    cam.depth_result(0, [])  # a frame with no boxes changes nothing
    assert status()[0] == health.WARN
    cam.depth_result(1, [])
    assert status()[0] == health.OK


def test_a_camera_without_depth_reports_no_3d_figures():
    _, _, values = camera(1, 1.0)
    assert '3D boxes located' not in values
