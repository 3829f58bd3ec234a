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
kosmos_node, the executable: start the node, spin it, stop it cleanly.

With ``autostart`` the node is configured and activated at start-up and the
process exits 1 when that fails, so a launch file or systemd sees it. On
Ctrl-C or SIGTERM the worker ends its generation at the next token before
the context goes down.
"""

import signal
import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from .config import ConfigError
from .node import KosmosNode


def _ignore_signals():
    """Let shutdown finish whatever SIGINT/SIGTERM still arrive."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass


def main(args=None):
    """Run kosmos_node until Ctrl-C; exit 1 when it cannot start."""
    rclpy.init(args=args)
    logger = rclpy.logging.get_logger('kosmos')
    node, code = None, 0
    try:
        node = KosmosNode()
        if node.get_parameter('autostart').value and not node.start():
            logger.fatal('could not start (state %s); see the error above'
                         % node.lifecycle_label())
            code = 1
        else:
            executor = MultiThreadedExecutor(num_threads=4)
            executor.add_node(node)
            executor.spin()
    except ConfigError as error:
        logger.fatal(str(error))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        _ignore_signals()
        start = time.monotonic()
        if node is not None:
            stopped = node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
        if node is not None:
            # Said once, so a slow exit can be told apart from a slow stop
            # (what follows is the interpreter unloading torch).
            logger.info('node stopped in %.2f s%s' % (
                time.monotonic() - start,
                '' if stopped else ' (the worker did not end in time)'))
    sys.exit(code)


if __name__ == '__main__':
    main()
