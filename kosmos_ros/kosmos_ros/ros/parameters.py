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
The node's parameters on ROS: declared, read and updated from ``config``.

``config.PARAMETERS`` (ROS-free) says what each parameter is; this module
turns that into descriptors (description, range, read-only), declares them,
and checks a ``ros2 param set`` with the same one-line reasons as a bad
start-up value. What a change does is the node's business.
"""

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange,
                                ParameterDescriptor)
from rclpy.exceptions import (InvalidParameterTypeException,
                              InvalidParameterValueException,
                              ParameterUninitializedException)

from .config import Config, ConfigError, PARAMETERS


def descriptor(param):
    """Return the ParameterDescriptor of a ``config.Param``."""
    extra = {}
    if param.low is not None and param.kind is int:
        extra['integer_range'] = [IntegerRange(
            from_value=param.low, to_value=param.high, step=1)]
    elif param.low is not None:
        extra['floating_point_range'] = [FloatingPointRange(
            from_value=float(param.low), to_value=float(param.high))]
    # Floats also take integers (`ros2 param set /kosmos rate 2`), and an
    # empty list default has no element type (rclpy would make it a byte
    # array); config checks the value, its type and its range.
    return ParameterDescriptor(
        description=param.description, read_only=not param.runtime,
        dynamic_typing=param.kind is float or param.default == [], **extra)


def declare(node, overrides):
    """
    Declare every parameter on ``node``; raise ConfigError for bad ones.

    ``overrides`` ({name: Parameter}, the node's start-up values) tells an
    untyped empty list apart; rclpy keeps them only in a private dict.
    """
    errors = []
    for name, param in PARAMETERS.items():
        override = overrides.get(name)
        # `queries: []` in a YAML file comes without a type (rcl cannot
        # type an empty list): it means the empty default.
        untyped_empty = param.default == [] and override is not None \
            and override.value is None
        try:
            node.declare_parameter(name, param.default, descriptor(param),
                                   ignore_override=untyped_empty)
        except (InvalidParameterValueException,
                InvalidParameterTypeException) as error:
            # Say it as config does: name, accepted range, given value.
            value = override.value if override is not None else None
            errors.append("parameter '%s' %s" % (
                name, param.check(value) or str(error)))
    if errors:
        raise ConfigError('; '.join(errors))


def read(node):
    """Return the node's checked Config; raise ConfigError."""
    values = {}
    for name in PARAMETERS:
        try:
            values[name] = node.get_parameter(name).value
        except ParameterUninitializedException:
            # `-p image_topics:=[]`: an empty list carries no type.
            raise ConfigError("parameter '%s' was given no typed value "
                              '(an empty list has none)' % name) from None
    return Config.from_values(values)


def updated(config, params):
    """
    Return the Config after setting ``params`` (rclpy Parameters).

    ``config`` None (not configured yet): each value is checked alone and
    None is returned. Raises ConfigError with the reason for a refusal.
    Parameters not in the table (use_sim_time, ...) are not ours: ignored.
    """
    updates = {}
    for param in params:
        spec = PARAMETERS.get(param.name)
        if spec is None:
            continue
        why = spec.check(param.value)
        if why:
            raise ConfigError("parameter '%s' %s" % (param.name, why))
        updates[param.name] = spec.coerce(param.value)
    if config is None or not updates:
        return config
    # The checks that involve two parameters.
    return Config.from_values({**config.values, **updates})
