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
Parameters: one table in config.py; the YAML, launch file, guides agree.

(kosmos_ros/doc/parameters.md is generated from it: test_docs.py.)
"""

import importlib.util
from pathlib import Path

from kosmos_ros.ros.config import Config, ConfigError, LAUNCH, PARAMETERS, \
    yaml_value
import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[1]
NODE_DOC = PACKAGE / 'doc' / 'node.md'


def test_defaults_are_valid():
    config = Config.from_values({})
    assert config.rate == 2.0 and config.image_topics == ['image_raw']
    assert config.model_options().model == PARAMETERS['model'].default
    assert not config.model_options().allow_unsafe_pickle
    assert Config.from_values({'allow_unsafe_pickle': True}).model_options(
    ).allow_unsafe_pickle


@pytest.mark.parametrize('name, value, words', [
    ('rate', -1.0, ["'rate'", '[0.0, 1000.0]', '-1.0']),
    ('rate', float('nan'), ["'rate'", 'finite']),
    ('max_new_tokens', 0, ["'max_new_tokens'", '[1, 512]', '0']),
    ('max_batch', 2.0, ["'max_batch'", 'an integer', '2.0']),
    ('lazy', 'yes', ["'lazy'", 'true or false']),
    ('image_topics', [], ["'image_topics'", '1 to 64', 'got 0']),
    ('image_topics', ['a', 'a'], ['distinct']),
    ('image_topics', ['bad topic'], ['invalid topic names']),
    ('prompt', '   ', ["'prompt'", 'non-empty']),
    ('prompt', 'x' * 1001, ['at most 1000']),
    ('device', 'gpu', ["'device'", 'cuda:N', "'gpu'"]),
    ('dtype', 'fp8', ["'dtype'", 'fp32, fp16, bf16', "'fp8'"]),
    ('image_qos', 'fast', ["'image_qos'", 'best_effort']),
])
def test_a_bad_value_gets_one_line_naming_parameter_range_and_value(
        name, value, words):
    with pytest.raises(ConfigError) as error:
        Config.from_values({name: value})
    message = str(error.value)
    assert '\n' not in message
    for word in words:
        assert word in message


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        Config.from_values({'rate': -1.0, 'image_topics': []})
    assert "'rate'" in str(error.value) and "'image_topics'" in \
        str(error.value)


def test_an_integer_is_a_valid_rate():
    assert Config.from_values({'rate': 2}).rate == 2.0
    assert PARAMETERS['rate'].check(2) is None


def test_yaml_file_lists_every_parameter_with_its_default():
    data = yaml.safe_load((PACKAGE / 'config' / 'kosmos.yaml').read_text())
    assert list(data) == ['/**'], 'matches the node in any namespace'
    values = data['/**']['ros__parameters']
    assert set(values) == set(PARAMETERS)
    for name, param in PARAMETERS.items():
        assert values[name] == param.default, name


def test_launch_file_offers_the_launch_parameters_and_overrides_none():
    pytest.importorskip('launch_ros', reason='launch_ros not available: '
                        'source a ROS 2 setup.bash')
    from launch.actions import DeclareLaunchArgument
    path = PACKAGE / 'launch' / 'kosmos.launch.py'
    spec = importlib.util.spec_from_file_location('kosmos_launch', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = {a.name: a for a in module.generate_launch_description().entities
            if isinstance(a, DeclareLaunchArgument)}
    assert set(LAUNCH) == set(PARAMETERS) <= set(args)
    for name in LAUNCH:
        # Shown by --show-args: the node's own default, declared once.
        default = ''.join(s.text for s in args[name].default_value)
        assert default == yaml_value(PARAMETERS[name].default), name
        assert PARAMETERS[name].description in args[name].description
    # Not the node's: the file decides unless it is given.
    assert ''.join(s.text for s in args['use_sim_time'].default_value) == ''


def test_an_argument_overrides_the_file_only_when_given():
    pytest.importorskip('launch_ros', reason='launch_ros not available: '
                        'source a ROS 2 setup.bash')
    from launch import LaunchContext
    from kosmos_ros.ros import launching
    context = LaunchContext()
    for name, param in PARAMETERS.items():  # what the declarations set
        context.launch_configurations[name] = yaml_value(param.default)
    context.launch_configurations['use_sim_time'] = ''
    assert launching.given_overrides(context) == {}
    # An including launch file gives other values: they override.
    context.launch_configurations.update(rate='3', lazy='false',
                                         queries="['a cup']")
    assert launching.given_overrides(context) == {
        'rate': 3.0, 'lazy': False, 'queries': ['a cup']}


def test_the_node_guide_says_every_parameter_is_a_launch_argument():
    text = NODE_DOC.read_text()
    sentence = text[text.index('Launch arguments:'):]
    sentence = sentence[:sentence.index(', then')]
    assert 'every [parameter](parameters.md)' in sentence


@pytest.mark.parametrize('values, words', [
    ({'depth_topics': ['/a/depth', '/b/depth']},
     "'depth_topics' must list one depth topic"),
    ({'depth_topics': ['a depth']}, "'depth_topics' has invalid topic names"),
    ({'depth_min': 5.0, 'depth_max': 2.0}, 'leave no valid depth'),
    ({'target_frame': 'base link'}, "'target_frame' must be a TF frame id"),
    ({'queries': ['a cup', 'a cup']}, 'given more than once'),
    ({'queries': ['x' * 60], 'max_question_chars': 50},
     'more than the 50 allowed'),
])
def test_values_that_do_not_fit_together_are_refused(values, words):
    with pytest.raises(ConfigError, match=words):
        Config.from_values(values)


def test_a_camera_without_depth_is_an_empty_entry():
    config = Config.from_values({'image_topics': ['/a/image', '/b/image'],
                                 'depth_topics': ['/a/depth', '']})
    assert config.depth_topics == ['/a/depth', '']


@pytest.mark.parametrize('dtype', ['fp32', 'bf16'])
def test_8bit_with_a_dtype_other_than_fp16_is_refused(dtype):
    with pytest.raises(ConfigError) as error:
        Config.from_values({'dtype': dtype, 'quantization': '8bit'})
    assert "'dtype', 'quantization' and 'compile'" in str(error.value)
    assert 'fp16' in str(error.value) and dtype in str(error.value)
    for ok in ('auto', 'fp16'):
        Config.from_values({'dtype': ok, 'quantization': '8bit'})


@pytest.mark.parametrize('quantization', ['int8wo', 'w8a8'])
@pytest.mark.parametrize('dtype', ['fp32', 'fp16'])
def test_int8_weights_with_a_dtype_other_than_bf16_are_refused(
        dtype, quantization):
    with pytest.raises(ConfigError) as error:
        Config.from_values({'dtype': dtype, 'quantization': quantization})
    assert '%s computes in bf16' % quantization in str(error.value)
    assert str(error.value).count('\n') == 0, 'one line'
    for ok in ('auto', 'bf16'):
        for compiled in (False, True):
            Config.from_values({'dtype': ok, 'quantization': quantization,
                                'compile': compiled})


def test_8bit_with_compile_is_refused():
    with pytest.raises(ConfigError) as error:
        Config.from_values({'quantization': '8bit', 'compile': True})
    assert 'set compile off' in str(error.value)
    for quantization in ('none', '4bit'):
        Config.from_values({'quantization': quantization, 'compile': True})
