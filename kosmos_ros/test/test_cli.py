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
"""The kosmos-ros command line, run as a user would."""

import json
import subprocess
import sys

from conftest import BOX_PROMPT, make_frame
import cv2
import pytest

pytest.importorskip('torch', reason='torch is not installed')


def run(*args):
    return subprocess.run([sys.executable, '-m', 'kosmos_ros.cli', *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp('images')
    cv2.imwrite(str(folder / 'a.png'), make_frame(480, 640, 1))
    cv2.imwrite(str(folder / 'b.jpg'), make_frame(120, 300, 2))
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    return folder


def test_caption_json_has_pixel_boxes_and_scores(tiny_model_dir, images,
                                                 tmp_path):
    proc = run('caption', str(images / 'a.png'), str(images / 'b.jpg'),
               '--model', str(tiny_model_dir), '--json', '--prompt',
               BOX_PROMPT, '--max-new-tokens', '6', '--annotate',
               str(tmp_path / 'out'))
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert [r['image'] for r in records] == [str(images / 'a.png'),
                                             str(images / 'b.jpg')]
    assert (records[0]['width'], records[0]['height']) == (640, 480)
    assert records[0]['boxes'], 'the open-object prompt yields a box'
    for record in records:
        for box in record['boxes']:
            x1, y1, x2, y2 = box['bbox']
            assert 0 <= x1 < x2 <= record['width']
            assert 0 <= y1 < y2 <= record['height']
            assert 0 < box['score'] <= 1
            assert box['phrase'] == 'a red cup'
    written = cv2.imread(str(tmp_path / 'out' / 'a_kosmos.png'))
    assert written.shape == (480, 640, 3)
    assert 'loading model' in proc.stderr


def test_bad_image_is_reported_and_others_still_run(tiny_model_dir, images):
    proc = run('caption', str(images / 'broken.jpg'), str(images / 'a.png'),
               '--model', str(tiny_model_dir), '--max-new-tokens', '4')
    assert proc.returncode == 1
    assert 'cannot read image' in proc.stderr and 'broken.jpg' in proc.stderr
    assert proc.stdout.startswith(str(images / 'a.png') + ': An image of')


def test_missing_model_exits_2_with_instructions(images, tmp_path):
    proc = run('caption', str(images / 'a.png'), '--model',
               str(tmp_path / 'missing'))
    assert proc.returncode == 2
    assert 'make-tiny-model' in proc.stderr


def test_make_tiny_model_writes_a_loadable_checkpoint(tmp_path):
    proc = run('make-tiny-model', str(tmp_path / 'tiny'))
    assert proc.returncode == 0, proc.stderr
    assert 'RANDOM' in proc.stderr
    from kosmos_ros.loading import load_model, ModelOptions
    model, processor, _, _ = load_model(ModelOptions(str(tmp_path / 'tiny')))
    assert model.config.model_type == 'kosmos-2'
    assert (tmp_path / 'tiny' / 'model.safetensors').exists()


def test_ask_a_region_prints_the_answer_json(tiny_model_dir, images):
    proc = run('ask', str(images / 'a.png'), '--box', '10', '20', '200',
               '220', 'What is this object?', '--model', str(tiny_model_dir),
               '--json', '--max-new-tokens', '5')
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert 'answer' in record and 'caption' not in record
    assert (record['width'], record['height']) == (640, 480)


def test_ask_with_a_bad_box_fails_with_the_reason(tiny_model_dir, images):
    proc = run('ask', str(images / 'a.png'), '--box', '10', '20', '5',
               '220', 'What is this?', '--model', str(tiny_model_dir))
    assert proc.returncode == 1
    assert 'x2 > x1' in proc.stderr


def test_locate_prints_boxes_of_the_phrase(tiny_model_dir, images):
    proc = run('locate', str(images / 'a.png'), 'the red cup', '--model',
               str(tiny_model_dir), '--json')
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record['phrase'] == 'the red cup'
    assert record['boxes'] and all(
        b['phrase'] == 'the red cup' for b in record['boxes'])
