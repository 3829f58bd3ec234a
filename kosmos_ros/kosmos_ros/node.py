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
kosmos_node: grounded captions of camera topics as vision_msgs detections.

A thin rclpy shell over the core: image callbacks only drop the message into
its camera's latest-frame slot (``frames``); one worker thread takes frames
round-robin, runs the engine and publishes. The executor never waits on the
model.

Outputs of a camera subscribed on ``<topic>`` (``<topic>/compressed`` for a
CompressedImage) are published next to it:
``<topic>/kosmos/detections`` (vision_msgs/Detection2DArray),
``<topic>/kosmos/caption`` (kosmos_ros_interfaces/Caption) and
``<topic>/kosmos/annotated`` (sensor_msgs/Image, drawn only while subscribed).
"""

from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
import threading
import time

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange,
                                ParameterDescriptor, SetParametersResult)
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from . import conversions
from .engine import DEFAULT_PROMPT, KosmosEngine, MAX_NEW_TOKENS_LIMIT
from .frames import FrameScheduler
from .loading import DEFAULT_MODEL, ModelLoadError, ModelOptions
from .preprocess import ImageError
from .questions import check_no_markup, check_text, RequestError

MAX_PROMPT_CHARS = 1000

# name: (default, description, read_only, extra descriptor fields)
PARAMETERS = {
    'model': (DEFAULT_MODEL, 'Hugging Face hub id or local checkpoint '
              'folder of a Kosmos-2 model.', True, {}),
    'device': ('auto', 'auto, cpu, cuda or cuda:N (auto = cuda if '
               'available).', True, {}),
    'dtype': ('auto', 'auto, fp32, fp16 or bf16 (auto = fp16 on CUDA, fp32 '
              'on CPU).', True, {}),
    'quantization': ('none', 'none, 8bit or 4bit (bitsandbytes, CUDA only).',
                     True, {}),
    'attn_implementation': ('auto', 'Attention kernel: auto, eager or sdpa.',
                            True, {}),
    'local_files_only': (False, 'Never contact the model hub (use the local '
                         'cache or folder only).', True, {}),
    'image_topics': (['image_raw'], 'Image topics to caption; a topic ending '
                     'in /compressed is read as sensor_msgs/CompressedImage.',
                     True, {}),
    'image_qos': ('auto', 'Reliability of the image subscriptions: auto '
                  '(match the publishers), reliable or best_effort.', True,
                  {}),
    'prompt': (DEFAULT_PROMPT, 'Prompt for captions; keep <grounding> to get '
               'boxes. Settable at runtime.', False, {}),
    'max_new_tokens': (64, 'Most tokens generated per caption. Settable at '
                       'runtime.', False, {'integer_range': [IntegerRange(
                           from_value=1, to_value=MAX_NEW_TOKENS_LIMIT,
                           step=1)]}),
    'rate': (2.0, 'Most caption batches per second, all cameras together '
             '(0 = as fast as the model goes). Settable at runtime.', False,
             {'floating_point_range': [FloatingPointRange(
                 from_value=0.0, to_value=1000.0)]}),
    'max_batch': (1, 'Most cameras captioned together in one batch.', True,
                  {'integer_range': [IntegerRange(from_value=1, to_value=64,
                                                  step=1)]}),
    'lazy': (True, 'Subscribe to a camera only while someone subscribes to '
             'its outputs.', True, {}),
    'publish_annotated': (True, 'Publish <topic>/kosmos/annotated (drawn '
                          'only while subscribed).', True, {}),
    'service_timeout': (30.0, 'Seconds a service call may take, waiting '
                        'included; then it fails.', False,
                        {'floating_point_range': [FloatingPointRange(
                            from_value=0.1, to_value=3600.0)]}),
    'max_question_chars': (500, 'Longest question or phrase accepted.', True,
                           {'integer_range': [IntegerRange(
                               from_value=1, to_value=100_000, step=1)]}),
    'answer_max_new_tokens': (32, 'Tokens per answer when a request says 0.',
                              False, {'integer_range': [IntegerRange(
                                  from_value=1, to_value=MAX_NEW_TOKENS_LIMIT,
                                  step=1)]}),
    'max_answer_tokens': (128, 'Most tokens a request may ask for.', True,
                          {'integer_range': [IntegerRange(
                              from_value=1, to_value=MAX_NEW_TOKENS_LIMIT,
                              step=1)]}),
    'max_history': (8, 'Most earlier question/answer turns per request.',
                    True, {'integer_range': [IntegerRange(
                        from_value=0, to_value=100, step=1)]}),
    'max_image_pixels': (50_000_000, 'Larger images are dropped.', True,
                         {'integer_range': [IntegerRange(
                             from_value=1, to_value=1_000_000_000, step=1)]}),
}


def _output_base(topic):
    return topic[:-len('/compressed')] if topic.endswith('/compressed') \
        else topic


@dataclass
class Camera:
    """One image topic: its subscription, publishers and counters."""

    topic: str
    compressed: bool
    detections: object = None
    caption: object = None
    annotated: object = None
    subscription: object = None
    latest: object = None  # newest message, for the services
    encoded: tuple = (None, None)  # (message, its vision encoding)
    hold_until: float = 0.0  # keep subscribed for services until then
    malformed: int = 0
    published: int = 0
    annotated_published: int = 0
    last_error: str = ''
    outputs: list = field(default_factory=list)

    def listeners(self):
        """Count the subscribers to any of this camera's outputs."""
        return sum(p.get_subscription_count() for p in self.outputs)


class KosmosNode(Node):
    """Grounded captioning of camera topics with one Kosmos-2 model."""

    def __init__(self, engine=None, **kwargs):
        super().__init__('kosmos', **kwargs)
        for name, (default, text, read_only, extra) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(
                description=text, read_only=read_only, **extra))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.engine = engine or self._load_engine()
        if self._param('image_qos') not in ('auto', 'reliable',
                                            'best_effort'):
            raise ValueError('image_qos must be auto, reliable or '
                             'best_effort, got %r' % self._param('image_qos'))
        topics = list(self._param('image_topics'))
        if not topics or len(set(topics)) != len(topics):
            raise ValueError('image_topics must be a non-empty list of '
                             'distinct topics, got %r' % topics)
        self.cameras = {t: self._make_camera(t) for t in topics}
        self.scheduler = FrameScheduler(topics, self._param('rate'))
        self._stop = threading.Event()
        self._sub_lock = threading.Lock()
        self.reused_encodings = 0  # service calls that skipped the encoder
        # Image callbacks and the lazy (un)subscribe timer share one
        # mutually exclusive group: rclpy would otherwise let a take race the
        # destruction of its subscription (InvalidHandle kills the executor).
        self._camera_group = MutuallyExclusiveCallbackGroup()
        services = ReentrantCallbackGroup()
        from kosmos_ros_interfaces.srv import Ask, Locate
        self.create_service(Ask, '~/ask', self._on_ask,
                            callback_group=services)
        self.create_service(Locate, '~/locate', self._on_locate,
                            callback_group=services)
        self.create_timer(0.5, self._update_subscriptions,
                          callback_group=self._camera_group)
        self._update_subscriptions()
        self._worker = threading.Thread(target=self._work, name='kosmos',
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            'ready: %d camera(s) %s, rate %.2f Hz, prompt %r%s' % (
                len(topics), topics, self._param('rate'),
                self._param('prompt'),
                ', lazy (idle until outputs are subscribed)'
                if self._param('lazy') else ''))

    # -- setup -------------------------------------------------------------
    def _param(self, name):
        return self.get_parameter(name).value

    def _load_engine(self):
        options = ModelOptions(
            model=self._param('model'), device=self._param('device'),
            dtype=self._param('dtype'),
            quantization=self._param('quantization'),
            attn_implementation=self._param('attn_implementation'),
            local_files_only=self._param('local_files_only'))
        self.get_logger().info('loading model %s (device %s, dtype %s, '
                               'quantization %s) ...' % (
                                   options.model, options.device,
                                   options.dtype, options.quantization))
        start = time.monotonic()
        try:
            engine = KosmosEngine.load(
                options, max_pixels=self._param('max_image_pixels'))
        except (ModelLoadError, ValueError) as error:
            self.get_logger().fatal(str(error))
            raise
        self.get_logger().info('model loaded on %s in %.1f s' % (
            engine.device, time.monotonic() - start))
        return engine

    def _make_camera(self, topic):
        camera = Camera(topic, topic.endswith('/compressed'))
        base = _output_base(topic)
        camera.detections = self.create_publisher(
            Detection2DArray, base + '/kosmos/detections', 10)
        from kosmos_ros_interfaces.msg import Caption
        camera.caption = self.create_publisher(
            Caption, base + '/kosmos/caption', 10)
        camera.outputs = [camera.detections, camera.caption]
        if self._param('publish_annotated'):
            camera.annotated = self.create_publisher(
                Image, base + '/kosmos/annotated', 1)
            camera.outputs.append(camera.annotated)
        return camera

    def _image_qos(self, topic):
        mode = self._param('image_qos')
        if mode == 'auto':
            # A best-effort subscription matches every publisher, a reliable
            # one gets every frame of reliable publishers: choose per topic.
            infos = self.get_publishers_info_by_topic(
                self.resolve_topic_name(topic))
            best_effort = not infos or any(
                i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                for i in infos)
        else:
            best_effort = mode == 'best_effort'
        return QoSProfile(depth=1, reliability=(
            ReliabilityPolicy.BEST_EFFORT if best_effort
            else ReliabilityPolicy.RELIABLE))

    def _update_subscriptions(self, may_unsubscribe=True):
        """
        Subscribe to cameras someone listens to; drop the others (lazy).

        Only the timer (in the cameras' callback group) may unsubscribe.
        """
        with self._sub_lock:  # the timer and the services both call this
            self._update_subscriptions_locked(may_unsubscribe)

    def _update_subscriptions_locked(self, may_unsubscribe):
        lazy = self._param('lazy')
        now = time.monotonic()
        for topic, camera in self.cameras.items():
            captioned = not lazy or camera.listeners() > 0
            wanted = captioned or now < camera.hold_until
            if wanted and camera.subscription is None:
                kind = CompressedImage if camera.compressed else Image
                camera.subscription = self.create_subscription(
                    kind, topic, lambda msg, c=camera: self._on_image(c, msg),
                    self._image_qos(topic), callback_group=self._camera_group)
                self.get_logger().info('subscribed to %s' % topic)
            elif may_unsubscribe and not wanted and \
                    camera.subscription is not None:
                self.destroy_subscription(camera.subscription)
                camera.subscription = None
                camera.latest = None
                self.get_logger().info('no listeners: unsubscribed from %s'
                                       % topic)
            self.scheduler.set_active(topic, captioned)

    def _on_image(self, camera, msg):
        camera.latest = msg
        self.scheduler.put(camera.topic, msg)

    def _on_set_parameters(self, params):
        # Types and the ranges of rate / max_new_tokens are enforced by rclpy
        # from the descriptors; the prompt needs a check of its own.
        for param in params:
            value = param.value
            if param.name == 'prompt' and (
                    param.type_ != Parameter.Type.STRING or
                    not value.strip() or len(value) > MAX_PROMPT_CHARS):
                return SetParametersResult(
                    successful=False, reason='prompt must be a non-empty '
                    'string of at most %d characters' % MAX_PROMPT_CHARS)
        for param in params:
            if param.name == 'rate' and hasattr(self, 'scheduler'):
                self.scheduler.max_rate_hz = param.value
        return SetParametersResult(successful=True)

    # -- worker --------------------------------------------------------------
    def _work(self):
        while not self._stop.is_set():
            work = self.scheduler.next_work(self._param('max_batch'),
                                            timeout=0.5)
            if work is None:
                continue
            if isinstance(work, list):
                self._caption(work)
            else:
                self.scheduler.run_job(work)

    def _caption(self, frames):
        batch = []
        for frame in frames:
            camera = self.cameras[frame.camera]
            try:
                image, bgr = conversions.image_to_frame(
                    frame.data, self._param('max_image_pixels'))
            except ImageError as error:
                camera.malformed += 1
                camera.last_error = str(error)
                self.get_logger().warn(
                    'dropped a frame from %s: %s (%d dropped so far)' % (
                        camera.topic, error, camera.malformed),
                    throttle_duration_sec=5.0)
                continue
            batch.append((camera, frame.data, image, bgr))
        # One batch per colour order (cameras rarely mix them).
        for bgr in (False, True):
            group = [item for item in batch if item[3] == bgr]
            if group:
                self._caption_group(group, bgr)

    def _caption_group(self, group, bgr):
        try:
            images = [image for _, _, image, _ in group]
            embeds = self.engine.encode(images, bgr)
            for row, (camera, msg, _, _) in enumerate(group):
                # A question about this frame will not encode it again.
                camera.encoded = (msg, embeds[row:row + 1])
            results = self.engine.caption(
                images, prompt=self._param('prompt'),
                max_new_tokens=self._param('max_new_tokens'), bgr=bgr,
                should_stop=self._stop.is_set, image_embeds=embeds)
        except Exception as error:  # keep serving whatever went wrong
            self.get_logger().error('captioning failed: %s' % error,
                                    throttle_duration_sec=5.0)
            return
        if self._stop.is_set():
            return
        for (camera, msg, image, _), result in zip(group, results):
            header = msg.header
            camera.detections.publish(
                conversions.detections_msg(header, result))
            camera.caption.publish(conversions.caption_msg(header, result))
            camera.published += 1
            if camera.annotated is not None and \
                    camera.annotated.get_subscription_count() > 0:
                from .annotate import annotate
                camera.annotated.publish(conversions.frame_to_image_msg(
                    header, annotate(image, result, bgr=bgr), bgr))
                camera.annotated_published += 1

    # -- services ------------------------------------------------------------
    def _on_ask(self, request, response):
        def run(frame, bgr, embeds):
            history = list(zip(request.history_questions,
                               request.history_answers))
            if len(request.history_questions) != len(request.history_answers):
                raise RequestError('history_questions and history_answers '
                                   'differ in length')
            if len(history) > self._param('max_history'):
                raise RequestError('%d history turns, more than max_history '
                                   '(%d)' % (len(history),
                                             self._param('max_history')))
            for q, a in history:
                check_text('a history question', q, limit)
                check_text('a history answer', a, limit)
            result = self.engine.ask(
                frame, request.question,
                (request.x1, request.y1, request.x2, request.y2), history,
                self._tokens(request.max_new_tokens), bgr=bgr,
                image_embeds=embeds)
            response.answer = result.text
            return result
        limit = self._param('max_question_chars')
        return self._serve(request, response, 'ask', run, lambda: check_text(
            'question', request.question, limit))

    def _on_locate(self, request, response):
        def run(frame, bgr, embeds):
            return self.engine.locate(frame, request.phrase, bgr=bgr,
                                      image_embeds=embeds)

        def check():
            check_text('phrase', request.phrase,
                       self._param('max_question_chars'))
            check_no_markup('phrase', request.phrase)
        return self._serve(request, response, 'locate', run, check)

    def _tokens(self, asked):
        if asked == 0:
            return self._param('answer_max_new_tokens')
        if asked > self._param('max_answer_tokens'):
            raise RequestError('max_new_tokens %d is above the cap of %d' % (
                asked, self._param('max_answer_tokens')))
        return asked

    def _serve(self, request, response, name, run, check):
        """Validate, pick the frame, run on the worker, fill the response."""
        start = time.monotonic()
        timeout = self._param('service_timeout')
        try:
            check()
            msg, camera = self._request_frame(request, start + timeout)
            frame, bgr = conversions.image_to_frame(
                msg, self._param('max_image_pixels'))

            def job():
                cached, embeds = camera.encoded if camera else (None, None)
                if cached is not msg:
                    embeds = None
                else:
                    self.reused_encodings += 1
                return run(frame, bgr, embeds)
            future = self.scheduler.submit(job)
            try:
                result = future.result(max(timeout - (time.monotonic() -
                                                      start), 0.0))
            except FutureTimeout:
                future.cancel()
                raise RequestError('timed out after %.1f s (service_timeout)'
                                   % timeout)
        except (RequestError, ImageError) as error:
            response.success, response.message = False, str(error)
            self.get_logger().warn('%s refused: %s' % (name, error),
                                   throttle_duration_sec=2.0)
            return response
        except Exception as error:  # the node keeps serving, caller learns why
            response.success = False
            response.message = 'internal error: %s' % error
            self.get_logger().error('%s failed: %r' % (name, error))
            return response
        response.header = msg.header
        response.detections = conversions.detections_msg(msg.header, result)
        response.success = True
        response.message = '%d box(es) in %.2f s' % (
            len(response.detections.detections), time.monotonic() - start)
        return response

    def _request_frame(self, request, deadline):
        """Return the request's own image, or the camera's latest frame."""
        if len(request.image.data) or request.image.width:
            return request.image, None
        topic = request.camera or next(iter(self.cameras))
        camera = self.cameras.get(topic)
        if camera is None:
            raise RequestError('unknown camera %r; cameras: %s' % (
                topic, ', '.join(self.cameras)))
        camera.hold_until = time.monotonic() + 30.0
        if camera.latest is None and camera.subscription is None:
            # Lazy and idle: subscribe now and give the camera a moment.
            self._update_subscriptions(may_unsubscribe=False)
            wait_end = min(deadline, time.monotonic() + 2.0)
            while camera.latest is None and time.monotonic() < wait_end:
                time.sleep(0.02)
        if camera.latest is None:
            raise RequestError('no frame received yet on %s' % topic)
        return camera.latest, camera

    def shutdown(self, timeout=2.0):
        """Stop the worker (a running generation ends at its next token)."""
        self._stop.set()
        self.scheduler.close()
        self._worker.join(timeout)
        return not self._worker.is_alive()


def main(args=None):
    """Run kosmos_node until Ctrl-C."""
    rclpy.init(args=args)
    node = None
    try:
        node = KosmosNode()
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ModelLoadError, ValueError) as error:
        if node is None:
            print('kosmos_node: %s' % error)
            raise SystemExit(1)
        raise
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
