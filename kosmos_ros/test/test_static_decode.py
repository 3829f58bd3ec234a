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
"""Static-cache decoding: exact against greedy_generate, no recompiles."""

import functools
import random
import time

from conftest import make_frame
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='torch is not installed')

TEXTS = [
    '<grounding>An image of',
    '<grounding><phrase> a red cup</phrase><object>',
    '<grounding> Question: What is this object? Answer:',
    '<grounding>The person on the left is holding a blue box and a cat',
]
NEW = 24  # new tokens per exactness check


# One intra-op thread for the whole module (conftest.one_thread).
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def inputs(engine):
    """Make prompts of four different lengths and an image encoding each."""
    prompts = [engine.prompt(text) for text in TEXTS]
    assert len({len(p.input_ids) for p in prompts}) == len(prompts)
    embeds = engine.encode([make_frame(seed=k) for k in range(len(TEXTS))])
    return prompts, embeds


@pytest.fixture(scope='module')
def eager(engine):
    """Make the static-cache decoder that runs eagerly (compile=False)."""
    from kosmos_ros.model.static_decode import StaticDecoder
    return StaticDecoder(engine.model, compile=False)


@pytest.fixture(scope='module')
def compiled(engine):
    """Make a compiled decoder, warmed for batches 1 and 2 at 256 slots."""
    from kosmos_ros.model.static_decode import StaticDecoder
    decoder = StaticDecoder(engine.model, compile=True)
    seconds = decoder.warmup(batch_sizes=(1, 2), lengths=(256,))
    print('\ncompile warm-up (tiny model, 2 shapes): %.1f s' % seconds)
    return decoder


def greedy(engine, embeds, prompts, new=NEW, **kwargs):
    """Run decoding.greedy_generate (eos disabled unless eos_id is given)."""
    from kosmos_ros.model.decoding import greedy_generate
    return greedy_generate(engine.model, embeds, prompts, new,
                           kwargs.pop('eos_id', -1), engine.pad_id, **kwargs)


def static(decoder, engine, embeds, prompts, new=NEW, **kwargs):
    """Run a StaticDecoder as greedy() runs greedy_generate."""
    return decoder.generate(embeds, prompts, new, kwargs.pop('eos_id', -1),
                            engine.pad_id, **kwargs)


def assert_same(expected, got):
    """Token for token, and probabilities within 1e-5 relative."""
    assert len(expected) == len(got)
    for want, have in zip(expected, got):
        assert have.token_ids == want.token_ids
        np.testing.assert_allclose(have.probs, want.probs, rtol=1e-5)


def test_buckets():
    from kosmos_ros.model.static_decode import batch_bucket, length_bucket
    assert [batch_bucket(b) for b in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    with pytest.raises(ValueError):
        batch_bucket(9)
    assert length_bucket(1) == length_bucket(256) == 256
    assert length_bucket(257) == 512 and length_bucket(1025) == 2048


def check_batched_and_alone(engine, decoder, inputs, rows):
    """Batched and one-at-a-time, each equal to greedy_generate's."""
    prompts, embeds = inputs
    prompts, embeds = prompts[:rows], embeds[:rows]
    batched = static(decoder, engine, embeds, prompts)
    assert_same(greedy(engine, embeds, prompts), batched)
    for row in range(rows):
        alone = static(decoder, engine, embeds[row:row + 1],
                       prompts[row:row + 1])
        assert_same(greedy(engine, embeds[row:row + 1],
                           prompts[row:row + 1]), alone)
        assert_same(alone, batched[row:row + 1])
    assert all(len(out.token_ids) == NEW for out in batched)


@pytest.mark.parametrize('rows', [3, 4])
def test_eager_exact(engine, eager, inputs, rows):
    # 3 rows pad the batch to 4 with a dummy row; rows are left-padded.
    check_batched_and_alone(engine, eager, inputs, rows)


def test_eager_chunked_and_long(engine, eager, inputs):
    # 9 rows run as 8 + 1; 180 new tokens need the 512-slot bucket.
    prompts, embeds = inputs
    rows = [k % len(prompts) for k in range(9)]
    prompts9 = [prompts[k] for k in rows]
    assert_same(greedy(engine, embeds[rows], prompts9),
                static(eager, engine, embeds[rows], prompts9))
    assert (8, 256) in eager.shapes()
    long = [prompts[2]]  # the longest prompt: 98 + 179 slots > 256
    assert_same(greedy(engine, embeds[2:3], long, new=180),
                static(eager, engine, embeds[2:3], long, new=180))
    assert (1, 512) in eager.shapes()


def test_stops_eos_and_should_stop(engine, eager, inputs):
    prompts, embeds = inputs
    free = greedy(engine, embeds, prompts)
    # A stop id seen mid-row ends that row there (kept); the others go on.
    stop = free[1].token_ids[5]
    kwargs = {'stop_ids': (stop,)}
    want = greedy(engine, embeds, prompts, **kwargs)
    assert_same(want, static(eager, engine, embeds, prompts, **kwargs))
    assert want[1].token_ids[-1] == stop and len(want[1].token_ids) <= 6
    # The same token as eos; and every row's first token: one step only.
    want = greedy(engine, embeds, prompts, eos_id=stop)
    assert_same(want, static(eager, engine, embeds, prompts, eos_id=stop))
    firsts = tuple({out.token_ids[0] for out in free})
    want = greedy(engine, embeds, prompts, stop_ids=firsts)
    assert [len(out.token_ids) for out in want] == [1] * len(prompts)
    assert_same(want, static(eager, engine, embeds, prompts,
                             stop_ids=firsts))
    for new in (0, 1):
        assert_same(greedy(engine, embeds, prompts, new=new),
                    static(eager, engine, embeds, prompts, new=new))

    def stopper(after):
        calls = []
        return lambda: calls.append(1) or len(calls) >= after

    want = greedy(engine, embeds, prompts, should_stop=stopper(5))
    assert [len(out.token_ids) for out in want] == [5] * len(prompts)
    assert_same(want, static(eager, engine, embeds, prompts,
                             should_stop=stopper(5)))


def test_each_step_is_heard_with_the_tokens_so_far(engine, eager, inputs):
    # What the Ask/Locate actions stream as feedback: both decoders report
    # every step, and what they read then is a prefix of the final tokens.
    prompts, embeds = inputs
    for decode in (greedy, functools.partial(static, eager)):
        heard = []
        out = decode(engine, embeds[:2], prompts[:2], new=12,
                     on_step=lambda count, read: heard.append((count,
                                                               read())))
        assert [count for count, _ in heard] == list(range(1, 13))
        for count, rows in heard:
            assert [row[:count] for row in rows] == \
                [o.token_ids[:count] for o in out]
            assert all(len(row) == count for row in rows)


def test_compiled_exact(engine, compiled, eager, inputs):
    check_batched_and_alone(engine, compiled, inputs, 2)
    prompts, embeds = inputs
    assert_same(static(eager, engine, embeds[2:], prompts[2:]),
                static(compiled, engine, embeds[2:], prompts[2:]))


def test_no_recompile_after_warmup(engine, compiled, inputs):
    from torch._dynamo.utils import counters
    prompts, embeds = inputs
    compiles = compiled.compiles
    graphs = counters['stats']['unique_graphs']
    frames = counters['frames']['ok']
    rng = random.Random(0)
    start = time.monotonic()
    runs = 0
    # Any recompilation raises here instead of compiling.
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(40):
            rows = rng.sample(range(len(prompts)), rng.choice((1, 2)))
            new = rng.choice((1, 2, 5, 17, 32, 64, 100))
            stops = tuple(rng.sample(range(5, 1000), rng.choice((0, 1, 3))))
            sub_prompts = [prompts[r] for r in rows]
            out = static(compiled, engine, embeds[rows], sub_prompts, new=new,
                         stop_ids=stops)
            if runs % 4 == 0:  # and still exact
                assert_same(greedy(engine, embeds[rows], sub_prompts,
                                   new=new, stop_ids=stops), out)
            runs += 1
    print('\nflood: %d mixed requests in %.1f s, 0 recompiles'
          % (runs, time.monotonic() - start))
    assert compiled.compiles == compiles == 2
    assert counters['stats']['unique_graphs'] == graphs
    assert counters['frames']['ok'] == frames
    assert compiled.shapes() == [(1, 256), (2, 256)]


def test_no_graph_breaks(compiled):
    # Last: explain resets dynamo's caches (the warmed graphs go with them).
    from kosmos_ros.model.static_decode import _Slab
    slab = _Slab(compiled.text_model, 1, 256, compiled.device,
                 compiled.dtype)
    with torch.no_grad():
        explain = torch._dynamo.explain(compiled._step)(slab.args)
    assert explain.graph_count == 1 and explain.graph_break_count == 0
