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
kosmos_node: grounded captions of camera topics, as a lifecycle node.

A thin shell that wires the parts together:

- ``config``: the parameters, declared here from the one table;
- ``cameras``: per image topic its publishers and gated subscription;
- ``worker``: the one model thread (ROS-free) that captions and serves jobs;
- ``services``: Ask/Locate, answered later (deferred), holding no thread,
  and SetQueries;
- ``diagnostics``: /diagnostics from ``health``.

Lifecycle: configure checks every parameter (before any model loads) and
creates the publishers; activate loads the model, subscribes and starts the
worker; deactivate stops inference within one generation step and frees
the model (unless ``keep_model_loaded``); cleanup releases the rest. With
``autostart`` (the default) ``main`` goes to active at start-up and exits
non-zero if that fails.
"""

import functools
import gc
import signal
import sys
import time

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange,
                                ParameterDescriptor, SetParametersResult)
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import (InvalidParameterTypeException,
                              InvalidParameterValueException,
                              ParameterUninitializedException)
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from . import conversions
from .cameras import Camera, stamp_seconds
from .config import Config, ConfigError, PARAMETERS
from .diagnostics import Diagnostics
from .services import Services
from ..model.engine import KosmosEngine
from ..model.loading import ModelLoadError
from ..model.questions import RequestError
from ..pipeline.worker import CaptionWorker

TICK = 0.1  # seconds between housekeeping ticks (service call timeouts)
LAZY_EVERY = 5  # ticks between listener checks (0.5 s)
DIAGNOSTICS_EVERY = 10  # ticks between /diagnostics updates (1 s)
SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


def _transition(callback):
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


def _descriptor(param):
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


class KosmosNode(LifecycleNode):
    """Grounded captioning of camera topics with one Kosmos-2 model."""

    def __init__(self, engine=None, **kwargs):
        """
        Declare the parameters; raise ConfigError for a bad start-up value.

        ``engine`` (tests) is used instead of loading ``model``, and kept
        across deactivate.
        """
        super().__init__('kosmos', **kwargs)
        self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.config = None
        self.cameras = {}
        self.worker = None
        self.active = False
        self._given_engine = engine
        self._engine = engine
        self.spatial = None  # 3D positions (cameras with depth topics)
        self._tf_listener = None
        self._ticks = 0
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(TICK, self._tick, MutuallyExclusiveCallbackGroup(),
                          clock=steady)
        self.diagnostics = Diagnostics(self)
        self.calls = Services(self)

    def _declare_parameters(self):
        errors = []
        for name, param in PARAMETERS.items():
            override = self._parameter_overrides.get(name)
            # `queries: []` in a YAML file comes without a type (rcl cannot
            # type an empty list): it means the empty default.
            untyped_empty = param.default == [] and override is not None \
                and override.value is None
            try:
                self.declare_parameter(name, param.default, _descriptor(param),
                                       ignore_override=untyped_empty)
            except (InvalidParameterValueException,
                    InvalidParameterTypeException) as error:
                # Say it as config does: name, accepted range, given value.
                value = override.value if override is not None else None
                errors.append("parameter '%s' %s" % (
                    name, param.check(value) or str(error)))
        if errors:
            raise ConfigError('; '.join(errors))

    def _read_config(self):
        values = {}
        for name in PARAMETERS:
            try:
                values[name] = self.get_parameter(name).value
            except ParameterUninitializedException:
                # `-p image_topics:=[]`: an empty list carries no type.
                raise ConfigError("parameter '%s' was given no typed value "
                                  '(an empty list has none)' % name) from None
        return Config.from_values(values)

    # -- lifecycle -----------------------------------------------------------
    def lifecycle_label(self):
        """Return the current lifecycle state's label ('active', ...)."""
        # Humble's LifecycleNode has no public getter for its own state.
        return self._state_machine.current_state[1]

    @_transition
    def on_configure(self, state):
        """Check every parameter, then create the worker and cameras."""
        try:
            self.config = self._read_config()
        except ConfigError as error:
            self.get_logger().error('cannot configure: %s' % error)
            return FAILURE
        config = self.config
        self.worker = CaptionWorker(
            self._engine, config.image_topics, prompt=config.prompt,
            max_new_tokens=config.max_new_tokens, max_batch=config.max_batch,
            rate=config.rate, queries=config.queries, mode=config.mode,
            convert=self._convert, publish=self._publish, log=self._log)
        depth = config.depth_topics or [''] * len(config.image_topics)
        self.cameras = {t: Camera(self, t, self._on_frame,
                                  config.publish_annotated,
                                  self.worker.health[t], config.track_max_age,
                                  config.track_min_iou, config.image_qos, d)
                        for t, d in zip(config.image_topics, depth)}
        self.diagnostics.set_cameras(self.cameras.values())
        self._publish_label_info()
        if config.depth_topics:
            self._start_spatial()
        self.get_logger().info('configured: %d camera(s) %s' % (
            len(self.cameras), [c.resolved for c in self.cameras.values()]))
        return SUCCESS

    @_transition
    def on_activate(self, state):
        """Load the model (unless loaded), subscribe, start the worker."""
        config = self.config
        if self._engine is None:
            try:
                self._engine = KosmosEngine.load(
                    config.model_options(), config.max_image_pixels,
                    log=self.get_logger().info,
                    compile='on' if config.compile else 'off')
            except (ModelLoadError, ValueError) as error:
                self.get_logger().fatal(str(error))
                return FAILURE
        self.worker.engine = self._engine
        self.active = True
        self.worker.start()
        self._update_subscriptions()
        self.get_logger().info(
            'active: %d camera(s), rate %.2f Hz, mode %s, prompt %r, %d '
            'standing queries%s' % (
                len(self.cameras), config.rate, config.mode, config.prompt,
                len(config.queries),
                ', lazy (idle until outputs are subscribed)'
                if config.lazy else ''))
        return SUCCESS

    @_transition
    def on_deactivate(self, state):
        """Stop inference within one token, unsubscribe, free the model."""
        self._stop()
        if not self.config.keep_model_loaded:
            self._free_engine()
        self.get_logger().info('inactive: inference stopped%s' % (
            '' if self._engine is not None else ', model freed'))
        return SUCCESS

    @_transition
    def on_cleanup(self, state):
        """Release publishers, cameras and the model."""
        self._release()
        return SUCCESS

    @_transition
    def on_shutdown(self, state):
        """Release everything, from any state."""
        self._release()
        return SUCCESS

    @_transition
    def on_error(self, state):
        """Release everything; the node goes back to unconfigured."""
        self._release()
        return SUCCESS

    def _stop(self):
        self.active = False
        if self.worker is not None:
            self.worker.stop()
        for camera in self.cameras.values():
            camera.want(False)

    def _release(self):
        self._stop()
        for camera in self.cameras.values():
            camera.close()
        self.cameras = {}
        self.diagnostics.set_cameras([])
        self.worker = None
        if self._tf_listener is not None:
            self._tf_listener.unregister()
        self._tf_listener = self.spatial = None
        self._free_engine()

    def _start_spatial(self):
        """TF and the 3D locator, for cameras with a depth topic."""
        from tf2_ros import Buffer, TransformListener
        from .positions import Spatial
        buffer = Buffer()
        self._tf_listener = TransformListener(buffer, self)
        self.spatial = Spatial(self, buffer)

    def _free_engine(self):
        if self._engine is None or self._engine is self._given_engine:
            return
        device = str(self._engine.device)
        self._engine = None
        if self.worker is not None:
            self.worker.engine = None
        gc.collect()
        if device.startswith('cuda'):
            import torch
            torch.cuda.empty_cache()

    def start(self):
        """Configure and activate (autostart); return True when active."""
        for trigger in (self.trigger_configure, self.trigger_activate):
            if trigger() != SUCCESS:
                return False
        return True

    def shutdown(self, timeout=2.0):
        """Stop the worker (a running generation ends at its next token)."""
        self.active = False
        return self.worker.stop(timeout) if self.worker is not None else True

    # -- housekeeping --------------------------------------------------------
    def _tick(self):
        # An exception here would end the executor's spin: never let one out.
        try:
            self._housekeeping()
        except Exception as error:
            self.get_logger().error('housekeeping failed: %r' % error,
                                    throttle_duration_sec=5.0)

    def _housekeeping(self):
        self._ticks += 1
        self.calls.sweep()  # service timeouts
        if self._ticks % LAZY_EVERY == 0 and self.active:
            self._update_subscriptions()
        if self._ticks % DIAGNOSTICS_EVERY == 0:
            self.diagnostics.update()  # a dead worker is reported as ERROR,
            if self.active and self.worker is not None:
                self.worker.supervise()  # then restarted

    def _update_subscriptions(self):
        """Open cameras someone listens to (or not lazy); close the others."""
        worker, lazy = self.worker, self.config.lazy
        if worker is None:
            return  # being cleaned up
        for camera in list(self.cameras.values()):
            captioned = self.active and (not lazy or camera.listeners() > 0)
            wanted = captioned or (self.active and camera.held())
            camera.want(wanted)
            worker.scheduler.set_active(camera.topic, captioned)

    def find_camera(self, name):
        """Return the camera a request names (configured or resolved name)."""
        if not name:
            return next(iter(self.cameras.values()))
        for camera in self.cameras.values():
            if name in camera.names():
                return camera
        raise RequestError('unknown camera %r; cameras: %s' % (
            name, ', '.join(c.resolved for c in self.cameras.values())))

    def _on_set_parameters(self, params):
        updates = {}
        for param in params:
            spec = PARAMETERS.get(param.name)
            if spec is None:
                continue  # not ours (use_sim_time, diagnostic_updater.*)
            why = spec.check(param.value)
            if why:
                return _refused("parameter '%s' %s" % (param.name, why))
            updates[param.name] = spec.coerce(param.value)
        if self.config is None or not updates:
            return SetParametersResult(successful=True)
        try:  # the checks that involve two parameters
            config = Config.from_values({**self.config.values, **updates})
        except ConfigError as error:
            return _refused(str(error))
        old, self.config = self.config, config
        worker = self.worker
        if worker is not None:
            worker.prompt = config.prompt
            worker.max_new_tokens = config.max_new_tokens
            worker.scheduler.max_rate_hz = config.rate
            worker.queries = tuple(config.queries)
            worker.mode = config.mode
        for camera in self.cameras.values():
            for tracker in camera.trackers.values():
                tracker.max_age = config.track_max_age
                tracker.min_iou = config.track_min_iou
        if config.queries != old.queries:
            self.get_logger().info('standing queries: %s' % (
                config.queries or 'none (off)'))
            self._publish_label_info()
        return SetParametersResult(successful=True)

    def _publish_label_info(self):
        msg = conversions.label_info_msg(self.get_clock().now().to_msg(),
                                         self.config.queries)
        for camera in self.cameras.values():
            camera.label_info.publish(msg)

    # -- frames --------------------------------------------------------------
    def _on_frame(self, camera, msg):
        worker = self.worker
        if worker is not None:
            worker.scheduler.put(camera.topic, msg)

    def _convert(self, msg):
        return conversions.image_to_frame(msg, self.config.max_image_pixels)

    def _publish(self, frame, image, bgr, out):
        """Publish one frame's results (worker thread) under its header."""
        camera = self.cameras[frame.camera]
        msg = frame.data
        camera.encoded = (msg, out.embeds)  # a question about it: no encoding
        header = msg.header
        size = (image.shape[1], image.shape[0])
        frame_depth = self.spatial.prepare(camera, header) \
            if camera.depth is not None else None
        if out.caption is not None:
            self._publish_boxes(camera, 'captions', header, size, frame_depth,
                                conversions.caption_boxes(out.caption))
            camera.caption.publish(conversions.caption_msg(header,
                                                           out.caption))
        if out.queries:
            self._publish_boxes(camera, 'queries', header, size, frame_depth,
                                conversions.query_boxes(out.queries))
        if out.caption is not None and camera.annotated is not None and \
                camera.annotated.get_subscription_count() > 0:
            from ..pipeline.annotate import annotate
            camera.annotated.publish(conversions.frame_to_image_msg(
                header, annotate(image, out.caption, bgr=bgr), bgr))

    def _publish_boxes(self, camera, output, header, size, frame_depth,
                       labelled):
        """Publish 2D boxes with track ids, and in 3D where there is depth."""
        ids = camera.trackers[output].update(
            [(label, box.xyxy()) for label, box in labelled],
            stamp_seconds(header))
        flat = camera.detections if output == 'captions' else camera.queries
        flat.publish(conversions.detections_msg(header, labelled, ids))
        if frame_depth is None:
            return
        located = self.spatial.locate(camera, frame_depth, labelled, size,
                                      ids)
        if located is not None:
            (camera.detections_3d if output == 'captions'
             else camera.queries_3d).publish(located)

    def _log(self, level, text):
        # rclpy ties a severity to each call site: one call per level.
        logger = self.get_logger()
        if level == 'fatal':
            logger.fatal(text)
        elif level == 'error':
            logger.error(text)
        else:
            logger.warn(text)


def _refused(reason):
    return SetParametersResult(successful=False, reason=reason)


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
