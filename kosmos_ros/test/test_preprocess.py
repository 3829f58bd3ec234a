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
"""Fast preprocessing against the HF processor it replaces."""

from conftest import make_frame
import numpy as np
import pytest

pytest.importorskip('transformers', reason='transformers is not installed')

from kosmos_ros.cli.bench import synthetic_frame as scene  # noqa: E402, I100
from kosmos_ros.model.preprocess import Preprocessor  # noqa: E402


@pytest.fixture(scope='module')
def processor(tiny_model_dir):
    from transformers import AutoProcessor
    return AutoProcessor.from_pretrained(str(tiny_model_dir))


def reference(processor, frame):
    from PIL import Image
    return processor.image_processor(Image.fromarray(frame),
                                     return_tensors='np')['pixel_values'][0]


@pytest.mark.parametrize('height, width', [
    (224, 224), (240, 320), (480, 640), (1080, 1920), (1081, 1927)])
def test_close_to_the_reference_processor(processor, height, width):
    frame = scene(height, width)
    ours = Preprocessor(processor.image_processor)([frame])[0].numpy()
    ref = reference(processor, frame)
    assert ours.shape == ref.shape == (3, 224, 224)
    assert ours.dtype == np.float32
    diff = np.abs(ours - ref)
    # One grey level is 1/255/std = 0.0146..0.0150 after CLIP normalisation:
    # the same antialiased bicubic as PIL, off by at most a rounding step.
    assert diff.max() <= 0.0151
    assert diff.mean() < 0.001


def test_bgr_input_equals_rgb_input(processor):
    frame = scene(480, 640)
    pre = Preprocessor(processor.image_processor)
    np.testing.assert_array_equal(
        pre([frame[:, :, ::-1].copy()], bgr=True).numpy(), pre([frame]).numpy())


def test_batch_of_different_sizes(processor):
    pre = Preprocessor(processor.image_processor)
    out = pre([make_frame(100, 200), make_frame(720, 1280)])
    assert out.shape == (2, 3, 224, 224)


def test_refuses_a_processor_config_it_cannot_reproduce(processor):
    import copy
    cfg = copy.deepcopy(processor.image_processor)
    cfg.size = {'shortest_edge': 224}
    with pytest.raises(ValueError, match='fixed'):
        Preprocessor(cfg)
    cfg = copy.deepcopy(processor.image_processor)
    cfg.crop_size = {'height': 200, 'width': 200}
    with pytest.raises(ValueError, match='crop'):
        Preprocessor(cfg)
