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
The Ask, Locate and SetQueries services, answered without holding a thread.

A call's callback only hands the request to ``calls`` (validation, the job on
the worker) and returns at once; the response is sent later, by whichever
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

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.parameter import Parameter

from .calls import Call


class _ServiceCall(Call):
    """A call answered by a deferred service response."""

    def __init__(self, name, response):
        super().__init__(name, response)
        self._send = None  # the service's real send_response
        self._header = None
        self._sent = False
        self._send_lock = threading.Lock()

    def attach(self, send, header):
        """Learn where to send the answer (executor thread, after the callback)."""
        with self._send_lock:
            self._send, self._header = send, header
            ready = self.done and not self._sent
            self._sent = self._sent or ready
        if ready:
            send(self.response, header)

    def deliver(self):
        with self._send_lock:
            ready = self._send is not None and not self._sent
            self._sent = self._sent or ready
        if ready:
            self._send(self.response, self._header)


class Services:
    """``~/ask``, ``~/locate`` and ``~/set_queries`` of a KosmosNode."""

    def __init__(self, node, calls):
        from kosmos_ros_interfaces.srv import Ask, Locate, SetQueries
        self.node = node
        self.calls = calls
        self._unsent = {}  # id(response) -> _ServiceCall, until send_response
        self._lock = threading.Lock()
        group = MutuallyExclusiveCallbackGroup()  # callbacks return at once
        for kind, name, start in ((Ask, 'ask', calls.ask),
                                  (Locate, 'locate', calls.locate)):
            service = node.create_service(
                kind, '~/' + name, self._handler(name, start),
                callback_group=group)
            service.send_response = self._sender(service.send_response)
        node.create_service(SetQueries, '~/set_queries', self.set_queries,
                            callback_group=group)

    def _handler(self, name, start):
        def handle(request, response):
            call = _ServiceCall(name, response)
            with self._lock:
                self._unsent[id(response)] = call
            start(request, call)
            return response
        return handle

    def _sender(self, send):
        """Wrap a service's send_response: defer the calls still running."""
        def send_response(response, header):
            with self._lock:
                call = self._unsent.pop(id(response), None)
            if call is None or call.response is not response:
                send(response, header)  # not one of ours
            else:
                call.attach(send, header)
        return send_response

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
            self.calls.log_refusal('set_queries', result.reason)
        return response
