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

A shell that only wires the parts (``kosmos_ros.ros`` lists them): it reads
``parameters`` into a Config and hands each part its values, feeds camera
frames to the ``pipeline`` worker and the worker's results to ``outputs``,
and drives the lifecycle; Ask/Locate arrive as services and actions over
one request path (``calls``). Configure checks every parameter (before any
model loads) and creates the publishers; activate loads the model,
subscribes and starts the worker; deactivate stops inference within one
generation step and frees the model (unless ``keep_model_loaded``);
cleanup releases the rest. The executable is ``main``.
"""

import functools

from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from . import conversions, parameters
from .actions import Actions
from .calls import Calls
from .cameras import Cameras
from .config import ConfigError
from .diagnostics import Diagnostics
from .logs import log_at, transition
from .outputs import Outputs
from .services import Services
from ..model.loading import ModelLoadError
from ..model.slot import EngineSlot
from ..pipeline.worker import CaptionWorker

TICK = 0.1  # seconds between housekeeping ticks (service call timeouts)
LAZY_EVERY = 5  # ticks between listener checks (0.5 s)
DIAGNOSTICS_EVERY = 10  # ticks between /diagnostics updates (1 s)
SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


class KosmosNode(LifecycleNode):
    """Grounded captioning of camera topics with one Kosmos-2 model."""

    def __init__(self, engine=None, **kwargs):
        """
        Declare the parameters; raise ConfigError for a bad start-up value.

        ``engine`` (tests) is used instead of loading ``model``, and kept
        across deactivate.
        """
        super().__init__('kosmos', **kwargs)
        parameters.declare(self, self._parameter_overrides)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.config = None
        self.cameras = Cameras()
        self.worker = None
        self.outputs = None  # made at configure
        self.active = False
        self._model = EngineSlot(engine)
        self._ticks = 0
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(TICK, self._tick, MutuallyExclusiveCallbackGroup(),
                          clock=steady)
        self.diagnostics = Diagnostics(self)
        # Ask/Locate: one path (calls) that the services and actions front.
        # (Node already has a `services` attribute.)
        self.calls = Calls(self)
        Services(self, self.calls)  # held by its service callbacks
        self.goals = Actions(self, self.calls)
        self._refuse_unavailable_transitions()

    def _refuse_unavailable_transitions(self):
        """
        Answer a change_state the current state has no transition for.

        Humble's rclpy raises out of the executor on one (a second
        ``ros2 lifecycle set ... deactivate``): the node died. Now it
        answers success=False, as rclcpp's lifecycle nodes do.
        """
        from rclpy.impl.implementation_singleton import \
            rclpy_implementation as _rclpy
        service = self._service_change_state
        change_state = service.callback

        def guarded(request, response):
            try:
                return change_state(request, response)
            except _rclpy.RCLError as error:
                self.get_logger().warning(
                    'lifecycle transition %d refused in state %s: %s' % (
                        request.transition.id, self.lifecycle_label(),
                        str(error).split(',')[0]))
                response.success = False
                return response
        service.callback = guarded

    # -- lifecycle -----------------------------------------------------------
    def lifecycle_label(self):
        """Return the current lifecycle state's label ('active', ...)."""
        # Humble's LifecycleNode has no public getter for its own state.
        return self._state_machine.current_state[1]

    @transition
    def on_configure(self, state):
        """Check every parameter, then create the worker and cameras."""
        try:
            self.config = parameters.read(self)
        except ConfigError as error:
            self.get_logger().error('cannot configure: %s' % error)
            return FAILURE
        config = self.config
        self.worker = CaptionWorker(
            self._model.engine, config.image_topics, prompt=config.prompt,
            max_new_tokens=config.max_new_tokens, max_batch=config.max_batch,
            rate=config.rate, queries=config.queries, mode=config.mode,
            convert=self._convert, publish=self._publish, log=self._log)
        self.outputs = Outputs(self, depth=bool(config.depth_topics))
        self.cameras = Cameras.configure(self, config, self._on_frame,
                                         self.worker.health)
        self.diagnostics.set_cameras(self.cameras.values())
        self.outputs.label_info(self.cameras.values(), config)
        self.get_logger().info('configured: %d camera(s) %s' % (
            len(self.cameras), [c.resolved for c in self.cameras.values()]))
        return SUCCESS

    @transition
    def on_activate(self, state):
        """Load the model (unless loaded), subscribe, start the worker."""
        config, log = self.config, self.get_logger()
        try:
            engine = self._model.load(
                config.model_options(), config.max_image_pixels, log=log.info,
                compile='on' if config.compile else 'off', warm=False)
            self.active = True
            self.worker.serve(engine, functools.partial(  # warmed there
                engine.prepare, (config.max_new_tokens,
                                 config.max_answer_tokens), config.prompt,
                log.info))
        except (ModelLoadError, ValueError, RuntimeError) as error:
            log.fatal(str(error))
            self._stop()
            return FAILURE
        self._update_subscriptions()
        self.get_logger().info(
            'active: %d camera(s), rate %.2f Hz, mode %s, prompt %r, %d '
            'standing queries%s' % (
                len(self.cameras), config.rate, config.mode, config.prompt,
                len(config.queries), ', lazy (idle until outputs are '
                'subscribed)' if config.lazy else ''))
        return SUCCESS

    @transition
    def on_deactivate(self, state):
        """Stop inference within one token, unsubscribe, free the model."""
        stopped, keep = self._stop(), self.config.keep_model_loaded
        freed = not keep and self._free_engine()
        self.get_logger().info('inactive: inference stopped%s' % (
            ', model freed' if freed else '' if stopped or keep else
            '; the model goes when the worker ends (not in time)'))
        return SUCCESS

    @transition
    def on_cleanup(self, state):
        """Release publishers, cameras and the model."""
        self._release()
        return SUCCESS

    # Shutdown (from any state) and error (back to unconfigured) release
    # everything alike.
    on_shutdown = on_error = on_cleanup

    def _stop(self):
        """Stop the worker and the cameras; return whether the worker ended."""
        self.active = False
        stopped = self.worker.stop() if self.worker is not None else True
        self.cameras.want(False)
        return stopped

    def _release(self):
        self._stop()
        self._free_engine()  # while the worker can still drop its reference
        self.cameras.close()
        self.diagnostics.set_cameras([])
        self.worker = None
        if self.outputs is not None:
            self.outputs.close()

    def _free_engine(self):
        if self.worker is not None:
            self.worker.drop_engine()  # the slot's reference is then the last
        self.cameras.forget_encodings()  # tensors the model made
        return self._model.free()

    def start(self):
        """Configure and activate (autostart); return True when active."""
        return all(trigger() == SUCCESS for trigger in (
            self.trigger_configure, self.trigger_activate))

    def shutdown(self, timeout=2.0):
        """Stop the worker (a running generation ends at its next token)."""
        self.active = False
        return self.worker.stop(timeout) if self.worker is not None else True

    def destroy_node(self):
        """Destroy the action servers too (rclpy's destroy_node does not)."""
        # rclpy 10 destroys at shutdown even a node whose __init__ raised.
        if getattr(self, 'goals', None) is not None:
            self.goals.destroy()
        super().destroy_node()

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
        self.calls.sweep()  # Ask/Locate timeouts
        if self._ticks % LAZY_EVERY == 0 and self.active:
            self._update_subscriptions()
        if self._ticks % DIAGNOSTICS_EVERY == 0:
            self.diagnostics.update()  # a dead worker is reported as ERROR,
            if self.active and self.worker is not None:
                self.worker.supervise()  # then restarted

    def _update_subscriptions(self):
        worker = self.worker
        if worker is not None:  # None: being cleaned up
            self.cameras.gate(self.active, self.config.lazy, worker.set_active)

    def _on_set_parameters(self, params):
        try:
            config = parameters.updated(self.config, params)
        except ConfigError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if config is None or config is self.config:
            return SetParametersResult(successful=True)
        old, self.config = self.config, config
        if self.worker is not None:
            self.worker.update(
                prompt=config.prompt, max_new_tokens=config.max_new_tokens,
                rate=config.rate, queries=config.queries, mode=config.mode)
        for camera in self.cameras.values():
            camera.set_tracking(config.track_max_age, config.track_min_iou)
        if config.queries != old.queries:
            self.get_logger().info('standing queries: %s' % (
                config.queries or 'none (off)'))
        if (config.queries, config.min_score) != (old.queries,
                                                  old.min_score):
            self.outputs.label_info(self.cameras.values(), config)
        return SetParametersResult(successful=True)

    # -- frames --------------------------------------------------------------
    def _on_frame(self, camera, msg):
        worker = self.worker
        if worker is not None:
            worker.put(camera.topic, msg)

    def _convert(self, msg):
        return conversions.image_to_frame(msg, self.config.max_image_pixels)

    def _publish(self, frame, image, bgr, result):
        """Publish one frame's results (worker thread) under its header."""
        self.outputs.frame(self.cameras[frame.camera], frame.data, image, bgr,
                           result)

    def _log(self, level, text):
        log_at(self.get_logger(), level, text)
