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
kosmos_node's /diagnostics, through diagnostic_updater.

The levels and figures come from ``health`` (ROS-free); this module only
copies them into the updater's status. The updater's own timer runs on ROS
time, which stands still under ``use_sim_time`` without a /clock, so it is
cancelled and the node's steady-clock tick calls ``update`` instead.
"""

from diagnostic_updater import Updater

from ..pipeline import health


class Diagnostics:
    """One status for the model worker and one per camera."""

    def __init__(self, node):
        self.node = node
        self.updater = Updater(node, period=1.0)
        self.updater.timer.cancel()
        self.updater.setHardwareID('kosmos_ros')
        self.updater.add('worker', self._worker)
        self._camera_tasks = []

    def set_cameras(self, cameras):
        """Report these cameras (replacing the previous ones)."""
        for name in self._camera_tasks:
            self.updater.removeByName(name)
        self._camera_tasks = []
        for camera in cameras:
            name = 'camera %s' % camera.resolved
            self.updater.add(
                name, lambda stat, c=camera: self._camera(stat, c))
            self._camera_tasks.append(name)

    def update(self):
        """Publish every status now."""
        self.updater.update()

    def _worker(self, stat):
        node = self.node
        worker = node.worker
        engine = worker.engine if worker is not None else None
        device = getattr(engine, 'device', '') or ''
        gpu_memory = None
        if device.startswith('cuda'):
            import torch
            gpu_memory = torch.cuda.memory_allocated(device)
        state = worker.state if worker is not None else node.lifecycle_label()
        config = node.config
        _fill(stat, health.worker_status(
            worker.model if worker is not None else health.ModelHealth(),
            state, config.rate if config else 0.0, node.active, device,
            gpu_memory))
        if config is not None:
            stat.add('mode', config.mode)
            stat.add('standing queries', str(len(config.queries)))
        calls = node.calls
        stat.add('ask/locate in flight', str(calls.in_flight()))
        for outcome, count in calls.counts.items():
            stat.add('ask/locate %s' % outcome, str(count))
        return stat

    def _camera(self, stat, camera):
        node = self.node
        worker = node.worker
        if worker is None:  # cleaned up between two updates
            stat.summary(bytes([health.OK]), 'released')
            return stat
        stats = worker.frame_stats(camera.topic)
        return _fill(stat, health.camera_status(
            camera.health, stats, camera.listeners(), camera.subscribed,
            node.active, node.config.frame_timeout))


def _fill(stat, report):
    level, message, values = report
    stat.summary(bytes([level]), message)
    for key, value in values.items():
        stat.add(key, str(value))
    return stat
