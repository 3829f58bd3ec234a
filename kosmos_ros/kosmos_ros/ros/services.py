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
The Ask and Locate services, answered without holding an executor thread.

A call's callback only validates the request and queues a job for the
worker; it returns at once and the response is sent later, by whichever
thread finishes the call: the worker (answer), the camera's callback path
(first frame of a lazy camera), or the node's 0.1 s tick (timeout). This is
deferred response, as rclcpp offers it: the callback's response object is
recognised by the service's ``send_response``, which then waits for the call
to be finished instead of sending it half-filled.

Why not ``async def`` callbacks: Humble's executor keeps re-running a
pending coroutine task on every wake-up and its MultiThreadedExecutor
appends the task to a list it scans on each spin, once per re-run. Eight
calls waiting a few seconds while frames arrive at 100 Hz grew that list
into the tens of thousands and starved the model thread (measured: answers
slowed from 0.8 s to over 30 s).
"""

import threading
import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.parameter import Parameter

from . import conversions
from ..model.preprocess import ImageError
from ..model.questions import check_phrase, check_question, RequestError

FIRST_FRAME_WAIT = 2.0  # seconds a call waits for a lazy camera's first frame


class _Call:
    """One deferred call: its response is sent once, when both are ready."""

    def __init__(self, name, response, deadline, timeout):
        self.name = name
        self.response = response
        self.deadline = deadline
        self.timeout = timeout
        self.start = time.monotonic()
        self.job = None  # the worker's future
        self.frame_wait = None  # (future, deadline) while waiting for one
        self._send = None  # the service's real send_response
        self._header = None
        self._done = False
        self._sent = False
        self._lock = threading.Lock()

    def attach(self, send, header):
        """Learn where to send the answer (executor thread, after the callback)."""
        with self._lock:
            self._send, self._header = send, header
            ready = self._done and not self._sent
            self._sent = self._sent or ready
        if ready:
            send(self.response, header)

    def finish(self, fill):
        """Fill the response (once, any thread); send it if it can go."""
        with self._lock:
            if self._done:
                return False
            fill(self.response)
            self._done = True
            ready = self._send is not None and not self._sent
            self._sent = self._sent or ready
        if ready:
            self._send(self.response, self._header)
        return True

    @property
    def done(self):
        """Tell whether the response is filled."""
        return self._done


class Services:
    """``~/ask``, ``~/locate`` and ``~/set_queries`` of a KosmosNode."""

    def __init__(self, node):
        from kosmos_ros_interfaces.srv import Ask, Locate, SetQueries
        self.node = node
        self.reused_encodings = 0  # calls that skipped the vision encoder
        self._unsent = {}  # id(response) -> _Call, until send_response
        self._pending = set()  # calls not answered yet (for timeouts)
        self._lock = threading.Lock()
        group = MutuallyExclusiveCallbackGroup()  # callbacks return at once
        for kind, name, callback in ((Ask, '~/ask', self.ask),
                                     (Locate, '~/locate', self.locate)):
            service = node.create_service(kind, name, callback,
                                          callback_group=group)
            service.send_response = self._sender(service.send_response)
        node.create_service(SetQueries, '~/set_queries', self.set_queries,
                            callback_group=group)

    def _sender(self, send):
        """Wrap a service's send_response: defer the calls still running."""
        def send_response(response, header):
            with self._lock:
                call = self._unsent.pop(id(response), None)
            if call is None or call.response is not response:
                send(response, header)  # answered in the callback
            else:
                call.attach(send, header)
        return send_response

    # -- requests ------------------------------------------------------------
    def ask(self, request, response):
        """Answer a question about a region of a camera's latest frame."""
        node = self.node
        history = list(zip(request.history_questions,
                           request.history_answers))

        def check(config):
            if len(request.history_questions) != \
                    len(request.history_answers):
                raise RequestError('history_questions and history_answers '
                                   'differ in length')
            check_question(request.question, history,
                           config.max_question_chars, config.max_history)
            return self._tokens(request.max_new_tokens, config)

        def run(engine, frame, bgr, embeds, tokens):
            config = node.config
            result = engine.ask(
                frame, request.question,
                (request.x1, request.y1, request.x2, request.y2), history,
                tokens, bgr=bgr, image_embeds=embeds,
                max_chars=config.max_question_chars,
                max_history=config.max_history)
            response.answer = result.text
            return result
        return self._serve(request, response, 'ask', check, run)

    def locate(self, request, response):
        """Ground a phrase in a camera's latest frame."""
        node = self.node

        def check(config):
            check_phrase(request.phrase, config.max_question_chars)

        def run(engine, frame, bgr, embeds, _):
            return engine.locate(frame, request.phrase, bgr=bgr,
                                 image_embeds=embeds,
                                 max_chars=node.config.max_question_chars)
        return self._serve(request, response, 'locate', check, run)

    def set_queries(self, request, response):
        """Set the ``queries`` parameter: one path, one set of checks."""
        queries = list(request.queries)
        result = self.node.set_parameters([Parameter(
            'queries', Parameter.Type.STRING_ARRAY, queries)])[0]
        response.success = result.successful
        response.message = result.reason if not result.successful else \
            '%d standing queries' % len(queries)
        response.queries = list(self.node.get_parameter('queries').value)
        if not result.successful:
            self._log_refusal('set_queries', result.reason)
        return response

    @staticmethod
    def _tokens(asked, config):
        if asked == 0:
            return config.answer_max_new_tokens
        if asked > config.max_answer_tokens:
            raise RequestError('max_new_tokens %d is above the cap of %d' % (
                asked, config.max_answer_tokens))
        return asked

    def _serve(self, request, response, name, check, run):
        """Validate at once; queue the call; return (the answer comes later)."""
        node = self.node
        try:
            if not node.active or node.worker is None:
                raise RequestError('the node is not active: ros2 lifecycle '
                                   'set %s activate' %
                                   node.get_fully_qualified_name())
            config = node.config
            extra = check(config)
            camera = None
            if not (len(request.image.data) or request.image.width):
                camera = node.cameras.find(request.camera)
        except (RequestError, ImageError) as error:
            self._refuse(response, name, str(error))
            return response
        now = time.monotonic()
        call = _Call(name, response, now + config.service_timeout,
                     config.service_timeout)
        with self._lock:
            self._unsent[id(response)] = call
            self._pending.add(call)

        def submit(msg):
            self._submit(call, msg, camera, lambda *a: run(*a, extra))
        if camera is None:
            submit(request.image)
            return response
        waiter = camera.next_frame()
        camera.hold()  # lazy and idle: subscribe now
        if camera.latest is not None:
            waiter.cancel()
            submit(camera.latest)
        else:  # the camera's first frame submits it; the tick times it out
            call.frame_wait = (waiter, min(call.deadline,
                                           now + FIRST_FRAME_WAIT), camera)
            waiter.add_done_callback(
                lambda f: None if f.cancelled() else submit(f.result()))
        return response

    def _submit(self, call, msg, camera, run):
        """Queue the call's job on the worker (any thread)."""
        node = self.node
        worker = node.worker
        try:
            if worker is None:
                raise RequestError('the node was deactivated')
            frame, bgr = conversions.image_to_frame(
                msg, node.config.max_image_pixels)
        except (RequestError, ImageError) as error:
            self._finish_refused(call, str(error))
            return

        def job():
            embeds = camera.encoding_of(msg) if camera else None
            if embeds is not None:
                self.reused_encodings += 1
            return run(worker.engine, frame, bgr, embeds)
        call.job = worker.submit(job)
        call.job.add_done_callback(lambda future: self._complete(
            call, future, msg, camera))

    def _complete(self, call, future, msg, camera=None):
        """Fill and send the answer once the worker ran (or dropped) the job."""
        if future.cancelled():
            self._finish_refused(call, 'cancelled: the node was deactivated '
                                 'or is shutting down')
            return
        error = future.exception()
        if isinstance(error, (RequestError, ImageError)):
            self._finish_refused(call, str(error))
            return
        if error is not None:
            self.node.get_logger().error('%s failed: %r' % (call.name, error),
                                         throttle_duration_sec=2.0)
            self._finish_refused(call, 'internal error: %r' % error, log=False)
            return
        result = future.result()
        flat, located = self.node.outputs.boxes(
            camera, msg.header, (result.width, result.height),
            conversions.caption_boxes(result))

        def fill(response):
            response.header = msg.header
            response.detections = flat
            if located is not None:
                response.detections_3d = located
            response.success = True
            response.message = '%d box(es) in %.2f s' % (
                len(response.detections.detections),
                time.monotonic() - call.start)
        call.finish(fill)

    def sweep(self):
        """Time out calls (the node's tick); forget the ones answered."""
        now = time.monotonic()
        with self._lock:
            self._pending = {c for c in self._pending if not c.done}
            calls = list(self._pending)
        for call in calls:
            if call.frame_wait is not None:
                waiter, wait_end, camera = call.frame_wait
                if not waiter.done() and now >= wait_end:
                    waiter.cancel()
                    self._finish_refused(call, 'no frame received yet on %s'
                                         % camera.resolved)
                    continue
            if now >= call.deadline:
                if call.job is not None:
                    call.job.cancel()
                self._finish_refused(call, 'timed out after %.1f s '
                                     '(service_timeout)' % call.timeout)

    def _finish_refused(self, call, reason, log=True):
        def fill(response):
            response.success, response.message = False, reason
        if call.finish(fill) and log:
            self._log_refusal(call.name, reason)

    def _refuse(self, response, name, reason):
        response.success, response.message = False, reason
        self._log_refusal(name, reason)

    def _log_refusal(self, name, reason):
        self.node.get_logger().warn('%s refused: %s' % (name, reason),
                                    throttle_duration_sec=2.0)
