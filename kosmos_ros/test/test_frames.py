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
"""Frame scheduling: latest-frame slots, round-robin, rate cap, priority jobs."""

import threading
import time

from conftest import FakeClock
from kosmos_ros.pipeline.frames import FrameScheduler
import pytest


def test_newer_frame_replaces_an_unstarted_one():
    sched = FrameScheduler(['a'])
    sched.put('a', 1)
    sched.put('a', 2)
    (frame,) = sched.next_work(timeout=0)
    assert frame.data == 2
    assert sched.stats['a'].dropped == 1
    assert sched.stats['a'].processed == 1
    assert sched.next_work(timeout=0) is None


def test_round_robin_across_cameras():
    sched = FrameScheduler(['a', 'b', 'c'])
    served = []
    for _ in range(6):
        for cam in 'abc':
            sched.put(cam, cam)
        served.append(sched.next_work(max_batch=1, timeout=0)[0].camera)
    assert served == ['a', 'b', 'c', 'a', 'b', 'c']


def test_batch_takes_distinct_cameras_and_continues_after_them():
    sched = FrameScheduler(['a', 'b', 'c'])
    for cam in 'abc':
        sched.put(cam, cam)
    assert [f.camera for f in sched.next_work(max_batch=2, timeout=0)] == [
        'a', 'b']
    for cam in 'ab':
        sched.put(cam, cam)
    assert [f.camera for f in sched.next_work(max_batch=2, timeout=0)] == [
        'c', 'a']


def test_rate_cap_spaces_batches():
    clock = FakeClock()
    sched = FrameScheduler(['a'], max_rate_hz=2.0, clock=clock)
    sched.put('a', 1)
    assert sched.next_work(timeout=0)
    sched.put('a', 2)
    assert sched.next_work(timeout=0) is None  # 0.5 s not elapsed
    clock.now += 0.49
    assert sched.next_work(timeout=0) is None
    clock.now += 0.02
    assert sched.next_work(timeout=0)[0].data == 2


def test_jobs_go_before_frames_and_ignore_the_rate_cap():
    clock = FakeClock()
    sched = FrameScheduler(['a'], max_rate_hz=1.0, clock=clock)
    sched.put('a', 1)
    sched.next_work(timeout=0)
    sched.put('a', 2)
    future = sched.submit(lambda: 'answer')
    job = sched.next_work(timeout=0)
    sched.run_job(job)
    assert future.result(timeout=1) == 'answer'


def test_job_exception_reaches_the_caller():
    sched = FrameScheduler([])

    def boom():
        raise RuntimeError('bad')
    future = sched.submit(boom)
    sched.run_job(sched.next_work(timeout=0))
    with pytest.raises(RuntimeError, match='bad'):
        future.result(timeout=1)


def test_inactive_camera_keeps_no_frame():
    sched = FrameScheduler(['a'])
    sched.set_active('a', False)
    assert sched.put('a', 1) is False
    assert sched.next_work(timeout=0) is None
    assert sched.stats['a'].ignored == 1


def test_close_wakes_a_waiting_worker_and_cancels_jobs():
    sched = FrameScheduler(['a'])
    got = []
    worker = threading.Thread(target=lambda: got.append(sched.next_work()),
                              daemon=True)
    worker.start()
    time.sleep(0.05)  # waiting, with no timeout
    sched.close()
    worker.join(timeout=2)
    assert not worker.is_alive() and got == [None]
    assert sched.submit(lambda: 1).cancelled()
    sched.reopen()
    queued = sched.submit(lambda: 2)
    sched.close()
    assert queued.cancelled()
    sched.reopen()
    sched.put('a', 'frame')
    assert [f.data for f in sched.next_work()] == ['frame']


def test_backlog_never_exceeds_one_frame_per_camera():
    sched = FrameScheduler(['a', 'b', 'c', 'd'])
    for i in range(1000):
        sched.put('abcd'[i % 4], i)
    assert sched.max_backlog == 4
    assert sum(s.dropped for s in sched.stats.values()) == 996


@pytest.mark.parametrize('rate', [-1.0, float('nan')])
def test_invalid_rate_is_refused(rate):
    with pytest.raises(ValueError, match='rate'):
        FrameScheduler(['a'], max_rate_hz=rate)
