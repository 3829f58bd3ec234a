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
The Ask and Locate actions: the services' answers, with feedback and cancel.

A goal is the service request and its result the service response; both go
through ``calls``, the services' own path. Feedback says the state (encoding,
generating), the tokens so far and, for Ask, the answer so far, at most
``feedback_rate`` times a second. A queued goal is one still ACCEPTED: the
action protocol has feedback only for an EXECUTING goal (rclpy 10 drops
any other), so its status is what says it waits. Cancelling a goal ends its
generation at the next token (a queued goal never starts) and the worker
goes on with the next job.

No executor thread waits on a queued goal: the goal stays ACCEPTED until
the worker starts its job, which then calls ``execute``; only the execute
callback of the goal being generated waits for its answer, so at most one
thread is held however many goals are in flight.
"""

import threading
import time

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

from .calls import Call

CANCEL_SETTLE = 1.0  # seconds to wait for rclpy to mark a goal CANCELING
RESULT_TIMEOUT = 60  # seconds a finished goal's result is kept


class _GoalCall(Call):
    """A call answered as an action goal's result, with feedback."""

    def __init__(self, name, kind, goal, interval):
        super().__init__(name, kind.Result())
        self.kind = kind
        self.goal = goal
        self.finished = threading.Event()
        self._interval = interval  # least seconds between token feedback
        self._state = None
        self._last = 0.0
        self._begun = False
        self._begin_lock = threading.Lock()

    def begin(self):
        """Move the goal to EXECUTING (once): its execute callback runs."""
        if self._begun:  # every token after the first
            return
        with self._begin_lock:
            if self._begun:
                return
            self._begun = True
        self.goal.execute()

    def progress(self, state, tokens=0, text=None):
        self.begin()
        now = time.monotonic()
        if state == self._state and now - self._last < self._interval:
            return
        self._state, self._last = state, now
        self.tell(state, tokens, text)

    def tell(self, state, tokens=0, text=None):
        """Publish one feedback message."""
        feedback = self.kind.Feedback(state=state, tokens=tokens)
        if text is not None and hasattr(feedback, 'answer'):
            feedback.answer = text()
        self.goal.publish_feedback(feedback)

    def deliver(self):
        self.finished.set()
        self.begin()  # refused or cancelled before it ran: end it now


class Actions:
    """``~/ask`` and ``~/locate`` as actions of a KosmosNode."""

    def __init__(self, node, calls):
        from kosmos_ros_interfaces.action import Ask, Locate
        self.node = node
        self.calls = calls
        self._goals = {}  # goal id -> _GoalCall, until its result is set
        self._lock = threading.Lock()
        group = MutuallyExclusiveCallbackGroup()  # callbacks return at once
        self.servers = [
            ActionServer(node, kind, '~/' + name, self._execute,
                         callback_group=group,
                         goal_callback=lambda goal: GoalResponse.ACCEPT,
                         handle_accepted_callback=self._accepted(
                             name, kind, start),
                         cancel_callback=self._cancel,
                         result_timeout=RESULT_TIMEOUT)
            for kind, name, start in ((Ask, 'ask', calls.ask),
                                      (Locate, 'locate', calls.locate))]

    def destroy(self):
        """Destroy the action servers (before the node)."""
        for server in self.servers:
            server.destroy()
        self.servers = []

    def _accepted(self, name, kind, start):
        def accepted(goal):
            config = self.node.config
            rate = config.feedback_rate if config else 0.0
            call = _GoalCall(name, kind, goal, 1.0 / rate if rate > 0 else 0.0)
            with self._lock:
                self._goals[bytes(goal.goal_id.uuid)] = call
            start(goal.request, call)
        return accepted

    def _cancel(self, goal):
        with self._lock:
            call = self._goals.get(bytes(goal.goal_id.uuid))
        if call is None or call.done:
            return CancelResponse.REJECT  # finished: nothing to cancel
        self.calls.cancel(call)
        return CancelResponse.ACCEPT

    def _execute(self, goal):
        """Wait for the goal's answer (it is being generated), then end it."""
        with self._lock:
            call = self._goals.get(bytes(goal.goal_id.uuid))
        if call is None:  # cannot happen: accepted() registered it
            goal.abort()
            return None
        # The deadline finishes every call (the node's tick); the margin
        # covers a tick that is late.
        call.finished.wait(call.timeout + 5.0)
        with self._lock:
            self._goals.pop(bytes(goal.goal_id.uuid), None)
        if call.outcome == 'cancelled':
            # rclpy marks the goal CANCELING after our cancel callback
            # returns, which may be after the answer is ready.
            end = time.monotonic() + CANCEL_SETTLE
            while not goal.is_cancel_requested and time.monotonic() < end:
                time.sleep(0.002)
        if call.outcome == 'answered':
            goal.succeed()
        elif call.outcome == 'cancelled' and goal.is_cancel_requested:
            goal.canceled()
        else:
            if not call.done:
                call.response.message = 'no answer in time'
            goal.abort()
        return call.response
