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
Soak kosmos_node as a robot would, for N minutes, and say what grew.

    source /opt/ros/<distro>/setup.bash   # and the workspace (tools/test.sh
    python3 tools/soak.py --minutes 60    # builds one in build/<distro>/)

Starts kosmos_node (the tiny random checkpoint unless --model) in a process
of its own and drives it: two cameras (raw and JPEG) at --hz, Ask calls and
Locate goals in a loop with every third goal cancelled mid-generation,
a parameter change every few seconds (queries, min_score, rate, prompt),
output subscribers created and destroyed, a deactivate/activate now and
then, and a client process that dies mid-goal. It samples the node's
process (RSS, threads, open fds) every --interval seconds and prints one
line each, then a JSON summary (--json FILE too): the RSS slope over the
second half (MB/hour) with and without the steps at lifecycle cycles,
threads and fds after each cycle against before it, the longest silence of
each output while the node was active, call latencies p50/p99, calls never
answered. Exit 1 when the node died, a call went unanswered, an output fell
silent for longer than --max-silence, or RSS grew faster than --max-slope
MB/hour over the second half (--max-slope-between-cycles: without the
steps).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'kosmos_ros'))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402

NS = '/soak'
CAMERAS = ('/soak/cam0/image_raw', '/soak/cam1/image_raw/compressed')
OUTPUTS = ('/soak/cam0/image_raw/kosmos/detections',
           '/soak/cam1/image_raw/kosmos/detections',
           '/soak/cam0/image_raw/kosmos/caption')
PROMPT = '<grounding><phrase> a red cup</phrase><object>'  # boxes every frame
# Runtime changes the node takes while it runs, cycled through.
CHANGES = [('queries', ['a red cup', 'the door']), ('min_score', 0.0),
           ('rate', 3.0), ('prompt', PROMPT), ('queries', []),
           ('min_score', 0.0), ('rate', 4.0), ('mode', 'both')]


def wait_done(future, timeout):
    """Wait (polling: the executor spins elsewhere) until ``future`` is done."""
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    return future.done()


def proc_sample(pid):
    """Return (RSS MB, threads, open fds) of process ``pid``."""
    status = open('/proc/%d/status' % pid).read().split('\n')
    fields = dict(line.split(':', 1) for line in status if ':' in line)
    rss = int(fields['VmRSS'].split()[0]) / 1024.0
    return rss, int(fields['Threads']), len(os.listdir('/proc/%d/fd' % pid))


def slope_mb_per_hour(samples, segments=None):
    """
    Least-squares slope of [(seconds, MB)] in MB per hour.

    With ``segments`` (one label a sample: the lifecycle cycles before it)
    each segment has an intercept of its own and they share the slope: the
    growth while the node works, without the steps at the cycles (warm-up
    there: a new worker thread fills a glibc arena of its own).
    """
    if len(samples) < 3:
        return 0.0
    t = np.array([s[0] for s in samples], dtype=float)
    y = np.array([s[1] for s in samples], dtype=float)
    labels = np.zeros(len(t)) if segments is None else np.asarray(segments)
    columns = [t] + [(labels == label).astype(float)
                     for label in np.unique(labels)]
    if len(t) <= len(columns):
        return 0.0
    fit = np.linalg.lstsq(np.stack(columns, axis=1), y, rcond=None)[0]
    return float(fit[0] * 3600.0)


def percentile(values, q):
    """Return the q-th percentile of ``values`` in ms, or None."""
    return round(float(np.percentile(values, q)) * 1000, 1) if values \
        else None


class Driver:
    """Everything a robot does to the node, counted."""

    def __init__(self, node, hz):
        from kosmos_ros_interfaces.action import Locate
        from kosmos_ros_interfaces.srv import Ask
        from sensor_msgs.msg import CompressedImage, Image
        self.node, self.hz = node, hz
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.active = threading.Event()  # the node is meant to be active
        self.last_seen = dict.fromkeys(OUTPUTS)
        self.silence = dict.fromkeys(OUTPUTS, 0.0)
        self.calls = {'ask': [], 'locate': [], 'cancelled': 0,
                      'refused': {}, 'unanswered': 0, 'sent': 0}
        frame = np.random.default_rng(0).integers(
            0, 255, (240, 320, 3), dtype=np.uint8)
        self.raw = Image(height=240, width=320, encoding='rgb8', step=960,
                         data=frame.tobytes())
        self.jpeg = CompressedImage(
            format='jpeg', data=cv2.imencode('.jpg', frame)[1].tobytes())
        self.pubs = [node.create_publisher(Image, CAMERAS[0],
                                           qos_profile_sensor_data),
                     node.create_publisher(CompressedImage, CAMERAS[1],
                                           qos_profile_sensor_data)]
        self.frames = 0
        self.subs = [self._listen(topic) for topic in OUTPUTS]
        self.ask = node.create_client(Ask, NS + '/kosmos/ask')
        self.Ask, self.Locate = Ask, Locate

    def _listen(self, topic):
        from kosmos_ros_interfaces.msg import Caption
        from vision_msgs.msg import Detection2DArray
        kind = Caption if topic.endswith('caption') else Detection2DArray
        return self.node.create_subscription(
            kind, topic, lambda msg, t=topic: self._seen(t), 10)

    def _seen(self, topic):
        now = time.monotonic()
        with self.lock:
            self.last_seen[topic] = now

    def check_silence(self, now):
        """Track each output's longest gap while the node is active."""
        with self.lock:
            for topic, seen in self.last_seen.items():
                if seen is not None and self.active.is_set():
                    self.silence[topic] = max(self.silence[topic], now - seen)

    def publish_frames(self):
        """Both cameras at ``hz``, stamped now."""
        while not self.stop.wait(1.0 / self.hz):
            stamp = self.node.get_clock().now().to_msg()
            for pub, msg in zip(self.pubs, (self.raw, self.jpeg)):
                msg.header.stamp = stamp
                pub.publish(msg)
            self.frames += 1

    def churn_listeners(self, every=15.0):
        """Destroy and re-create the caption subscriber (lazy gates)."""
        while not self.stop.wait(every):
            self.node.destroy_subscription(self.subs[2])
            time.sleep(1.0)
            self.subs[2] = self._listen(OUTPUTS[2])

    def _unanswered(self, what, began):
        """Count a call with no answer in 60 s; say when it was sent."""
        with self.lock:
            self.calls['unanswered'] += 1
        print('[soak] no answer in 60 s: %s sent at %s (wall clock)' % (
            what, time.strftime('%H:%M:%S', time.localtime(
                time.time() - (time.monotonic() - began)))), flush=True)

    def _record(self, kind, began, success, message):
        with self.lock:
            if success:
                self.calls[kind].append(time.monotonic() - began)
            else:
                reason = message.split(':')[0][:60]
                self.calls['refused'][reason] = \
                    self.calls['refused'].get(reason, 0) + 1

    def ask_loop(self):
        """Ask about a box of camera 0, one call after another."""
        request = self.Ask.Request(question='What is this object?', x1=10.0,
                                   y1=10.0, x2=200.0, y2=200.0,
                                   camera=CAMERAS[0], max_new_tokens=8)
        while not self.stop.is_set():
            if not self.ask.wait_for_service(timeout_sec=1.0):
                continue
            began = time.monotonic()
            self.calls['sent'] += 1
            future = self.ask.call_async(request)
            if not wait_done(future, 60.0):
                self._unanswered('ask', began)
                continue
            answer = future.result()
            self._record('ask', began, answer.success, answer.message)
            self.stop.wait(0.2)

    def locate_loop(self):
        """
        Locate goals on camera 1, every third cancelled.

        Humble's rclpy ActionClient has no lock: a goal's response that
        arrives (on the executor's thread) before send_goal_async has stored
        its future is dropped, and the goal looks unanswered. So this loop
        owns its client's node and spins it on its own thread.
        """
        from rclpy.executors import SingleThreadedExecutor
        node = rclpy.create_node('soak_locate')
        client = ActionClient(node, self.Locate, NS + '/kosmos/locate')
        executor = SingleThreadedExecutor()
        executor.add_node(node)

        def wait(future, timeout):
            executor.spin_until_future_complete(future, timeout_sec=timeout)
            return future.done()
        count = 0
        while not self.stop.is_set():
            if not client.wait_for_server(timeout_sec=1.0):
                continue
            count += 1
            began = time.monotonic()
            self.calls['sent'] += 1
            sent = client.send_goal_async(self.Locate.Goal(
                phrase='a red cup', camera=CAMERAS[1]))
            if not wait(sent, 60.0):
                self._unanswered('locate goal', began)
                continue
            if not sent.result().accepted:
                self._record('locate', began, False, 'not accepted')
                continue
            handle = sent.result()
            if count % 3 == 0:  # cancel mid-generation
                time.sleep(0.05)
                handle.cancel_goal_async()
            result = handle.get_result_async()
            if not wait(result, 60.0):
                self._unanswered('locate result', began)
                continue
            outcome = result.result().result
            if count % 3 == 0 and not outcome.success:
                self.calls['cancelled'] += 1
            else:
                self._record('locate', began, outcome.success,
                             outcome.message)
            self.stop.wait(0.2)
        executor.shutdown()
        node.destroy_node()


def set_parameter(node, client, name, value):
    """Set one parameter of the node; return whether it was taken."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    # Typed by hand: rclpy would call an empty list a byte array.
    kind, field = {bool: ('BOOL', 'bool_value'),
                   int: ('INTEGER', 'integer_value'),
                   float: ('DOUBLE', 'double_value'),
                   str: ('STRING', 'string_value'),
                   list: ('STRING_ARRAY', 'string_array_value')}[type(value)]
    request = SetParameters.Request(parameters=[Parameter(
        name=name, value=ParameterValue(
            type=getattr(ParameterType, 'PARAMETER_' + kind),
            **{field: value}))])
    future = client.call_async(request)
    return wait_done(future, 10.0) and future.result().results[0].successful


def lifecycle(node, client, transition):
    """Trigger a lifecycle transition ('deactivate', 'activate')."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    ids = {'activate': Transition.TRANSITION_ACTIVATE,
           'deactivate': Transition.TRANSITION_DEACTIVATE}
    future = client.call_async(ChangeState.Request(
        transition=Transition(id=ids[transition])))
    return wait_done(future, 60.0) and future.result().success


DYING_CLIENT = """
import os, sys, time, rclpy
from rclpy.action import ActionClient
from kosmos_ros_interfaces.action import Ask
rclpy.init()
node = rclpy.create_node('soak_dying_client')
client = ActionClient(node, Ask, '%s/kosmos/ask')
client.wait_for_server(timeout_sec=20)
client.send_goal_async(Ask.Goal(question='What is this?', max_new_tokens=64))
end = time.monotonic() + 1.0
while time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
os._exit(0)  # gone mid-goal, without a word
""" % NS


def run(args):
    """Soak the node; return the summary dict."""
    from kosmos_ros.model.tiny import make_tiny_model
    from lifecycle_msgs.srv import ChangeState
    from rcl_interfaces.srv import SetParameters
    model = args.model or make_tiny_model(
        os.path.join(tempfile.mkdtemp(), 'tiny'))
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    log = open(args.node_log, 'w')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'kosmos_ros.ros.main', '--ros-args',
         '-r', '__ns:=' + NS, '-p', 'model:=%s' % model, '-p', 'device:=cpu',
         '-p', 'image_topics:=[%s]' % ', '.join(CAMERAS),
         '-p', 'prompt:=%s' % PROMPT, '-p', 'max_new_tokens:=8',
         '-p', 'rate:=4.0', '-p', 'service_timeout:=20.0'],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    rclpy.init()
    node = rclpy.create_node('soak_driver')
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    driver = Driver(node, args.hz)
    params = node.create_client(SetParameters, NS + '/kosmos/set_parameters')
    states = node.create_client(ChangeState, NS + '/kosmos/change_state')
    assert params.wait_for_service(timeout_sec=60), 'the node did not start'
    driver.active.set()
    workers = [threading.Thread(target=f, daemon=True) for f in (
        driver.publish_frames, driver.churn_listeners, driver.ask_loop,
        driver.locate_loop)]
    for worker in workers:
        worker.start()
    start = time.monotonic()
    end = start + args.minutes * 60
    samples, cycles, changes, dying = [], [], 0, 0
    next_sample = next_change = next_dying = start
    next_cycle = start + args.cycle_every
    print('[soak] %d min, sampling every %g s; node log: %s' % (
        args.minutes, args.interval, args.node_log), flush=True)
    while time.monotonic() < end and proc.poll() is None:
        now = time.monotonic()
        driver.check_silence(now)
        if now >= next_sample:
            rss, threads, fds = proc_sample(proc.pid)
            samples.append((now - start, rss, threads, fds, len(cycles)))
            print('[soak] %6.0f s  rss %7.1f MB  threads %3d  fds %3d  '
                  'frames %6d  ask %5d  locate %5d  cancelled %4d  '
                  'refused %3d  unanswered %d' % (
                      now - start, rss, threads, fds, driver.frames,
                      len(driver.calls['ask']), len(driver.calls['locate']),
                      driver.calls['cancelled'],
                      sum(driver.calls['refused'].values()),
                      driver.calls['unanswered']), flush=True)
            next_sample += args.interval
        if now >= next_change:
            name, value = CHANGES[changes % len(CHANGES)]
            changes += set_parameter(node, params, name, value)
            next_change += args.change_every
        if now >= next_dying:
            subprocess.Popen([sys.executable, '-c', DYING_CLIENT], env=env,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
            dying += 1
            next_dying += 60.0
        if now >= next_cycle:
            before = proc_sample(proc.pid)
            driver.active.clear()
            ok = lifecycle(node, states, 'deactivate') and \
                lifecycle(node, states, 'activate')
            with driver.lock:  # silence counts from the re-activation
                driver.last_seen = dict.fromkeys(driver.last_seen,
                                                 time.monotonic())
            driver.active.set()
            time.sleep(5.0)  # the model loaded again, threads settled
            cycles.append({'ok': ok, 'before': before[1:],
                           'after': proc_sample(proc.pid)[1:]})
            next_cycle += args.cycle_every
        time.sleep(0.1)
    alive = proc.poll() is None
    driver.stop.set()
    for worker in workers:
        worker.join(30)
    half = [sample for sample in samples
            if sample[0] >= (samples[-1][0] / 2 if samples else 0)]
    slope = slope_mb_per_hour(half)
    steady = slope_mb_per_hour(half, [sample[4] for sample in half])
    summary = {
        'minutes': args.minutes, 'alive': alive,
        'rss_mb': [round(samples[0][1], 1), round(samples[-1][1], 1)]
        if samples else None,
        'rss_slope_second_half_mb_per_hour': round(slope, 1),
        'rss_slope_between_cycles_mb_per_hour': round(steady, 1),
        'rss_mb_every_interval': [round(sample[1], 1) for sample in samples],
        'threads': [samples[0][2], samples[-1][2]] if samples else None,
        'fds': [samples[0][3], samples[-1][3]] if samples else None,
        'lifecycle_cycles': cycles, 'parameter_changes': changes,
        'dying_clients': dying, 'frames_per_camera': driver.frames,
        'longest_silence_s': {t: round(s, 1)
                              for t, s in driver.silence.items()},
        'outputs_never_seen': [t for t, s in driver.last_seen.items()
                               if s is None],
        'calls': {'sent': driver.calls['sent'],
                  'ask_answered': len(driver.calls['ask']),
                  'locate_answered': len(driver.calls['locate']),
                  'cancelled': driver.calls['cancelled'],
                  'refused': driver.calls['refused'],
                  'unanswered': driver.calls['unanswered']},
        'latency_ms': {kind: {'p50': percentile(driver.calls[kind], 50),
                              'p99': percentile(driver.calls[kind], 99)}
                       for kind in ('ask', 'locate')},
    }
    failures = []
    if not alive:
        failures.append('the node died (exit %s)' % proc.returncode)
    if driver.calls['unanswered']:
        failures.append('%d calls never answered' % driver.calls['unanswered'])
    for topic, gap in driver.silence.items():
        if gap > args.max_silence:
            failures.append('%s silent for %.1f s' % (topic, gap))
    if summary['outputs_never_seen']:
        failures.append('never published: %s' % summary['outputs_never_seen'])
    if slope > args.max_slope:
        failures.append('RSS grew %.0f MB/hour over the second half' % slope)
    if args.max_slope_between_cycles is not None and \
            steady > args.max_slope_between_cycles:
        failures.append('RSS grew %.0f MB/hour between lifecycle cycles over '
                        'the second half' % steady)
    for cycle in cycles:
        if not cycle['ok'] or cycle['after'][0] > cycle['before'][0] + 2 \
                or cycle['after'][1] > cycle['before'][1] + 2:
            failures.append('lifecycle cycle: %r' % cycle)
    summary['failures'] = failures
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    node.destroy_node()
    rclpy.shutdown()
    return summary


def main(argv=None):
    """Parse the arguments, soak, print the summary; exit 1 on a failure."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--minutes', type=float, default=2.0)
    parser.add_argument('--interval', type=float, default=10.0)
    parser.add_argument('--hz', type=float, default=15.0)
    parser.add_argument('--change-every', type=float, default=5.0)
    parser.add_argument('--cycle-every', type=float, default=150.0)
    parser.add_argument('--max-silence', type=float, default=10.0)
    parser.add_argument('--max-slope', type=float, default=20.0,
                        help='MB/hour over the second half, cycles and all')
    parser.add_argument('--max-slope-between-cycles', type=float,
                        help='MB/hour over the second half without the steps '
                        'at lifecycle cycles (default: not checked)')
    parser.add_argument('--model', help='checkpoint (default: tiny random)')
    parser.add_argument('--json', help='also write the summary here')
    parser.add_argument('--node-log', default=os.path.join(
        tempfile.gettempdir(), 'kosmos-soak-node.log'))
    args = parser.parse_args(argv)
    summary = run(args)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        with open(args.json, 'w') as out:
            out.write(text + '\n')
    return 1 if summary['failures'] else 0


if __name__ == '__main__':
    sys.exit(main())
