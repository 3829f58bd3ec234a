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
How kosmos_node logs what would otherwise be lost or mis-levelled.

A lifecycle callback that raises becomes a silent ERROR transition in
rclpy: ``transition`` logs the exception first. The worker reports at a
severity chosen at run time, while rclpy ties one severity to each call
site: ``log_at`` has one call per level.
"""

import functools


def transition(callback):
    """Log what a transition raises (rclpy turns it into a silent ERROR)."""
    @functools.wraps(callback)
    def logged(self, state):
        try:
            return callback(self, state)
        except Exception as error:
            self.get_logger().error('%s failed: %r' % (callback.__name__,
                                                       error))
            raise
    return logged


def log_at(logger, level, text):
    """Log ``text`` at ``level`` ('fatal', 'error', else a warning)."""
    if level == 'fatal':
        logger.fatal(text)
    elif level == 'error':
        logger.error(text)
    else:
        logger.warning(text)
