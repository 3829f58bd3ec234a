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
"""Shared fixtures: one tiny random Kosmos-2 checkpoint per test session."""

import os
import signal
import struct
import subprocess
import zlib

import numpy as np
import pytest


def require_ros(*modules):
    """Skip the calling test module unless the node can run (and ``modules``)."""
    pytest.importorskip(
        'rclpy', reason='rclpy not available: source /opt/ros/<distro>/'
        'setup.bash (and the workspace with kosmos_ros_interfaces) to run the '
        'node tests')
    pytest.importorskip(
        'kosmos_ros_interfaces.msg', reason='kosmos_ros_interfaces is not '
        'built: colcon build it and source install/setup.bash')
    for module in modules:
        pytest.importorskip(module, reason='%s not available' % module)


def require_installed():
    """Skip unless kosmos_ros is built into the ament index; return its share."""
    index = pytest.importorskip(
        'ament_index_python.packages', reason='no ROS 2: source a setup.bash')
    try:
        return index.get_package_share_directory('kosmos_ros')
    except index.PackageNotFoundError:
        pytest.skip('kosmos_ros is not in the ament index: colcon build it '
                    'and source install/setup.bash', allow_module_level=True)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture(scope='module')
def one_thread():
    """
    Run a module's tiny models on one intra-op thread.

    Two threads only add OpenMP hand-offs at width 32-64, and on a loaded
    2-core machine they stall; compiled kernels bake in the thread count.
    """
    torch = pytest.importorskip('torch', reason='torch is not installed')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def tiny_model_dir(tmp_path_factory):
    """Write a tiny random checkpoint with the real make-tiny-model code."""
    pytest.importorskip('torch', reason='torch is not installed')
    from kosmos_ros.model.tiny import make_tiny_model
    return make_tiny_model(tmp_path_factory.mktemp('tiny') / 'kosmos2')


@pytest.fixture(scope='session')
def engine(tiny_model_dir):
    """Load the engine over the tiny checkpoint through from_pretrained."""
    from kosmos_ros.model.engine import KosmosEngine
    from kosmos_ros.model.loading import ModelOptions
    return KosmosEngine.load(ModelOptions(model=str(tiny_model_dir),
                                          device='cpu'))


@pytest.fixture(scope='session')
def pickle_only_model(tiny_model_dir, tmp_path_factory):
    """Copy the tiny checkpoint with its weights as pickle only."""
    import shutil
    from safetensors.torch import load_file
    import torch
    folder = tmp_path_factory.mktemp('pickled') / 'kosmos2'
    shutil.copytree(tiny_model_dir, folder)
    weights = load_file(str(folder / 'model.safetensors'))
    (folder / 'model.safetensors').unlink()
    torch.save(weights, str(folder / 'pytorch_model.bin'))
    return folder


def stop_group(proc, timeout=20):
    """SIGTERM a process started with start_new_session, then SIGKILL it."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def make_frame(height=240, width=320, seed=0):
    """Return a random RGB uint8 frame."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


# A prompt that opens an object: the random tiny model then emits location
# tokens, so its outputs carry boxes to check (what locate relies on too).
BOX_PROMPT = '<grounding><phrase> a red cup</phrase><object>'


def png_header(width, height):
    """Return a valid PNG header claiming width x height, and no pixels."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + struct.pack('>I', 13) + b'IHDR' + ihdr + \
        struct.pack('>I', zlib.crc32(b'IHDR' + ihdr)) + b'\x00' * 64


@pytest.fixture(scope='module')
def ros():
    """rclpy, initialised for one module of node tests."""
    rclpy = pytest.importorskip('rclpy', reason='rclpy not available')
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture
def harness(ros, engine):
    """Make KosmosNode harnesses (ros_harness.Harness); close them after."""
    from ros_harness import Harness
    made = []

    def make(**params):
        made.append(Harness(engine, **params))
        return made[-1]
    yield make
    for h in made:
        h.close()
