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
Ask and Locate on their way through the worker, whichever front end took them.

The services and the actions hand their request to ``Calls.ask`` or
``Calls.locate`` with a ``Call`` that says how the answer leaves (a deferred
service response, a goal's result) and what progress is worth telling
(action feedback). Everything else is this one path: validation and limits,
how many may be in flight (``max_calls``), the camera and the wait for a
lazy camera's first frame, the job on the worker, the deadline
(``service_timeout``), cancel, and filling the answer with the same
Detection2DArray/3DArray the topics carry. A call that is
stopped (cancelled, timed out, or the node deactivated) ends its generation
at the next token, and a queued one never starts.
"""

import threading
import time

from . import conversions
from ..model.preprocess import ImageError
from ..model.questions import check_phrase, check_question, RequestError

FIRST_FRAME_WAIT = 2.0  # seconds a call waits for a lazy camera's first frame
DEACTIVATED = 'cancelled: the node was deactivated or is shutting down'


class Call:
    """
    One Ask or Locate request: filled once, from any thread.

    A front end subclasses it: ``deliver`` sends the filled ``response``;
    ``progress(state, tokens, text)`` hears 'encoding' and 'generating'
    (``text()`` returns the answer so far).
    """

    def __init__(self, name, response):
        self.name = name
        self.response = response  # the service response or action result
        self.start = time.monotonic()
        self.timeout = 0.0  # service_timeout, set when the call is queued
        self.deadline = self.start
        self.job = None  # the worker's future
        self.frame_wait = None  # (future, deadline, camera) while waiting
        self.tokens = 0  # generated so far
        self.cancelled_at = None  # tokens when a cancel arrived
        self.outcome = None  # answered, refused, cancelled or timed out
        self._stop = False
        self._done = False
        self._lock = threading.Lock()

    # -- for front ends --------------------------------------------------------
    def deliver(self):
        """Send the filled response (called once, by the thread filling it)."""

    def progress(self, state, tokens=0, text=None):
        """Take note of how far the job got (worker thread)."""

    @property
    def done(self):
        """Tell whether the response is filled."""
        return self._done

    @property
    def cancelled(self):
        """Whether a cancel was asked for before the answer was ready."""
        return self.cancelled_at is not None

    # -- for Calls ---------------------------------------------------------------
    def stopping(self):
        """Tell whether the generation should end now (polled per token)."""
        return self._stop

    def stop(self):
        """End the generation at its next token; a queued job never runs."""
        self._stop = True
        if self.job is not None:
            self.job.cancel()  # no-op once running

    def step(self, tokens, text):
        """Count a generated token and pass it on as progress."""
        self.tokens = tokens
        self.progress('generating', tokens, text)

    def finish(self, fill, outcome):
        """Fill the response (once, any thread); return False if it was."""
        with self._lock:
            if self._done:
                return False
            fill(self.response)
            self.outcome = outcome
            self._done = True
        self.deliver()
        return True


class Calls:
    """The request path of a KosmosNode's Ask/Locate services and actions."""

    def __init__(self, node):
        self.node = node
        self.reused_encodings = 0  # calls that skipped the vision encoder
        self.counts = {'answered': 0, 'refused': 0, 'cancelled': 0,
                       'timed out': 0}
        self._pending = set()  # calls not answered yet (for timeouts)
        self._lock = threading.Lock()

    # -- requests ------------------------------------------------------------
    def ask(self, request, call):
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
            return engine.ask(
                frame, request.question,
                (request.x1, request.y1, request.x2, request.y2), history,
                tokens, bgr=bgr, image_embeds=embeds,
                max_chars=config.max_question_chars,
                max_history=config.max_history,
                should_stop=self._stopper(call), on_step=call.step)

        def fill(response, result):
            response.answer = result.text
        self._start(request, call, check, run, fill)

    def locate(self, request, call):
        """Ground a phrase in a camera's latest frame."""
        node = self.node

        def check(config):
            check_phrase(request.phrase, config.max_question_chars)

        def run(engine, frame, bgr, embeds, _):
            return engine.locate(frame, request.phrase, bgr=bgr,
                                 image_embeds=embeds,
                                 max_chars=node.config.max_question_chars,
                                 should_stop=self._stopper(call),
                                 on_step=call.step)
        self._start(request, call, check, run, lambda response, result: None)

    def cancel(self, call):
        """Stop a call (a cancelled goal): it ends within one token."""
        if call.done:
            return
        call.cancelled_at = call.tokens
        call.stop()
        wait = call.frame_wait
        if wait is not None:
            wait[0].cancel()
        if call.job is None:
            self._cancelled(call)  # not queued: nothing else will finish it

    def in_flight(self):
        """Count the calls not answered yet."""
        with self._lock:
            return sum(not c.done for c in self._pending)

    @staticmethod
    def _tokens(asked, config):
        if asked == 0:
            return config.answer_max_new_tokens
        if asked > config.max_answer_tokens:
            raise RequestError('max_new_tokens %d is above the cap of %d' % (
                asked, config.max_answer_tokens))
        return asked

    def _stopper(self, call):
        worker = self.node.worker
        return lambda: call.stopping() or worker.stopping()

    def _start(self, request, call, check, run, fill):
        """Validate at once; queue the call (the answer comes later)."""
        node = self.node
        try:
            if not node.active or node.worker is None:
                raise RequestError('the node is not active: ros2 lifecycle '
                                   'set %s activate' %
                                   node.get_fully_qualified_name())
            config = node.config
            if self.in_flight() >= config.max_calls:
                raise RequestError('busy: %d Ask/Locate calls are in flight '
                                   '(max_calls)' % config.max_calls)
            extra = check(config)
            call.timeout = config.service_timeout
            call.deadline = call.start + call.timeout
            camera = None
            if not (len(request.image.data) or request.image.width):
                camera = node.cameras.find(request.camera)
        except (RequestError, ImageError) as error:
            self._refuse(call, str(error))
            return
        with self._lock:
            self._pending.add(call)

        def submit(msg):
            self._submit(call, msg, camera, lambda *a: run(*a, extra), fill)
        if camera is None:
            submit(request.image)
            return
        waiter = camera.next_frame()
        camera.hold()  # lazy and idle: subscribe now
        if camera.latest is not None:
            waiter.cancel()
            submit(camera.latest)
        else:  # the camera's first frame submits it; the tick times it out
            call.frame_wait = (waiter, min(call.deadline,
                                           time.monotonic() +
                                           FIRST_FRAME_WAIT), camera)
            waiter.add_done_callback(
                lambda f: None if f.cancelled() else submit(f.result()))

    def _submit(self, call, msg, camera, run, fill):
        """Queue the call's job on the worker (any thread)."""
        node = self.node
        worker = node.worker
        try:
            if worker is None:
                raise RequestError('the node was deactivated')
            frame, bgr = conversions.image_to_frame(
                msg, node.config.max_image_pixels)
        except (RequestError, ImageError) as error:
            self._refuse(call, str(error))
            return

        def job():
            embeds = camera.encoding_of(msg) if camera else None
            if embeds is not None:
                self.reused_encodings += 1
            else:
                call.progress('encoding')
            result = run(worker.engine, frame, bgr, embeds)
            if worker.stopping():
                raise RequestError(DEACTIVATED)
            return result
        if call.stopping():  # cancelled while it waited for a frame
            return
        call.job = worker.submit(job)
        if call.stopping():  # cancelled meanwhile: cancel() missed the job
            call.job.cancel()
        call.job.add_done_callback(lambda future: self._complete(
            call, future, msg, camera, fill))

    def _complete(self, call, future, msg, camera, fill):
        """Fill and send the answer once the worker ran (or dropped) the job."""
        if future.cancelled():
            if call.cancelled:
                self._cancelled(call)
            else:
                self._refuse(call, DEACTIVATED)
            return
        error = future.exception()
        if isinstance(error, (RequestError, ImageError)):
            self._refuse(call, str(error))
            return
        if error is not None:
            self.node.get_logger().error('%s failed: %r' % (call.name, error),
                                         throttle_duration_sec=2.0)
            self._refuse(call, 'internal error: %r' % error, log=False)
            return
        result = future.result()
        flat, located = self.node.outputs.boxes(
            camera, msg.header, (result.width, result.height),
            conversions.caption_boxes(result))
        cancelled = call.cancelled

        def answer(response):
            response.header = msg.header
            response.detections = flat
            if located is not None:
                response.detections_3d = located
            fill(response, result)
            response.success = not cancelled
            seconds = time.monotonic() - call.start
            response.message = (
                'cancelled after %d token(s), at token %d' % (
                    result.num_tokens, call.cancelled_at) if cancelled else
                '%d box(es) in %.2f s' % (len(flat.detections), seconds))
        outcome = 'cancelled' if cancelled else 'answered'
        if call.finish(answer, outcome):
            self.counts[outcome] += 1

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
                    self._refuse(call, 'no frame received yet on %s'
                                 % camera.resolved)
                    continue
            if now >= call.deadline:
                self._refuse(call, 'timed out after %.1f s (service_timeout)'
                             % call.timeout, count='timed out')
                call.stop()  # a running generation ends at its next token

    def _cancelled(self, call):
        def fill(response):
            response.success = False
            response.message = 'cancelled before it ran'
        if call.finish(fill, 'cancelled'):
            self.counts['cancelled'] += 1

    def _refuse(self, call, reason, log=True, count='refused'):
        def fill(response):
            response.success, response.message = False, reason
        if not call.finish(fill, count):
            return False
        self.counts[count] += 1
        if log:
            self.log_refusal(call.name, reason)
        return True

    def log_refusal(self, name, reason):
        """Log why a request was refused (throttled)."""
        self.node.get_logger().warning('%s refused: %s' % (name, reason),
                                       throttle_duration_sec=2.0)
