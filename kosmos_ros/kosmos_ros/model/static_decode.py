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
Greedy decoding with a static KV cache and fixed shapes, for torch.compile.

At batch 1 a decode step of ``greedy_generate`` is thousands of eager aten
calls on a growing DynamicCache: the host, not the hardware, sets the pace.
``StaticDecoder`` runs the same decoding with every per-token tensor
preallocated, so a decode step is one fixed-shape graph that torch.compile
(inductor) turns into a few fused kernels; on CUDA the same code is compiled
with CUDA graphs (``mode="reduce-overhead"``).

Design:

* Prefill stays eager and is the very call ``greedy_generate`` makes on its
  first step (same left-padded collation, same position ids, the image
  embeddings inserted through ``image_embeds_position_mask``), so the first
  token and its probability are bit-identical. Its DynamicCache is then
  copied into the static buffers. transformers' StaticCache does not fit:
  Kosmos-2's text forward branches on the cache length (``> 0``) and sizes
  its causal mask with it, which a static cache makes a tensor (a graph
  break, or a new graph per step), and its mask spans the filled length,
  not the buffer. So the step is written here, over the model's modules.
* Cache layout: per text layer one key and one value buffer of shape
  (batch_bucket, heads, length_bucket, head_dim), one tensor each (inductor
  writes a slot of a separate input in place; a slot of a view of one big
  tensor made it copy the whole buffer every step). The prompt's K/V sit at
  slots [0, W) as collated, left padding included; generated token k's at
  slot W + k, written in the graph with ``index_copy_`` at a slot held in a
  tensor. Attention reads the whole buffer under an additive mask (the
  model's ``finfo.min`` convention) hiding padding and the slots not yet
  written this generation. Step, position (``pos0 + step``), mask, done
  flags, end ids and output columns are persistent tensors updated inside
  the graph, so nothing about a request is a constant of the graph: one
  graph per (batch bucket, length bucket) serves every request of that
  shape, with no host work per token beyond reading one flag.
* Buckets: batch 1/2/4/8 (unused rows are dummies: pad tokens, all-valid
  mask, marked done, never read back; more than 8 rows run in chunks). The
  graph depends only on the total slot count, not on how it splits between
  prompt and new tokens, so there is one length axis instead of prompt x
  new-token buckets: the next power of two >= W + max_new_tokens - 1, at
  least 256. An image prompt is >= 66 tokens (64 image slots and tags), so
  captions, locate and short questions with up to ~128 new tokens all land
  in 256: serving needs 4 graphs (one per batch bucket), 8 with 512. Idle
  slots cost at most 2x the attention reads actually needed: at full size
  ~0.1 GB per step against 5.4 GB of weights (< 2%); at width 32 nothing.
  Multiples of 16 or 32 would multiply compilations (each ~1 min on a
  2-core CPU) for no measurable gain.
* Why exact: each step computes what the DynamicCache step computes, with
  the checkpoint's own parameters and the model's eager attention math; a
  masked slot adds ``finfo.min`` before the softmax and contributes exactly
  0, so only summation order differs (more zero terms; small linears, see
  below), i.e. float rounding (~1e-7 relative). Position ids follow
  ``greedy_generate``'s rule (counted from the attention mask, so a padded
  row sees what it would see alone); rows never mix: dummy and finished
  rows cannot reach a live row through its mask.

Host cost, found by profiling the compiled step of a 24-layer width-32
model: linears with at most SMALL_LINEAR weights are written as a
multiply-and-sum that inductor fuses with the layer norms and attention
around them (an extern GEMM call per linear cost more than its math); the
generated wrapper's per-call size asserts are off (COMPILE_OPTIONS); and
after a shape has run once with full guards, later steps skip dynamo's
guard evaluation (``_stance``). The step is compiled with ``fullgraph=True``
(a graph break is an error) and ``dynamic=False``; after ``warmup`` no
request within the warmed shapes recompiles. Compiled kernels bake in the
intra-op thread count: keep ``torch.get_num_threads()`` as at warm-up.
"""

import contextlib
import math
import threading
import time

import torch

from .decoding import (_collate, cache_keyword, cut_at_ends, Generated,
                       greedy_generate, position_ids)

BATCH_BUCKETS = (1, 2, 4, 8)
MIN_LENGTH = 256  # smallest slot count; an image prompt alone is >= 66
MAX_ENDS = 8  # eos + up to 7 stop ids fit the graph's fixed-size end list
DEFAULT_LENGTHS = (MIN_LENGTH,)
SMALL_LINEAR = 1 << 16  # weights up to this many elements: fused reduction
# The inputs are fixed slab tensors and parameters already checked by
# dynamo: the generated wrapper's per-call size/stride asserts on ~540
# inputs cost ~0.5 ms a step at 24 layers, a third of it.
COMPILE_OPTIONS = {'size_asserts': False, 'alignment_asserts': False}


def batch_bucket(batch):
    """Smallest batch bucket holding ``batch`` rows (<= the largest)."""
    for size in BATCH_BUCKETS:
        if batch <= size:
            return size
    raise ValueError('batch %d exceeds the largest bucket %d'
                     % (batch, BATCH_BUCKETS[-1]))


def length_bucket(slots):
    """Slot count for ``slots`` needed slots: a power of two >= MIN_LENGTH."""
    return max(MIN_LENGTH, 1 << max(0, math.ceil(math.log2(max(slots, 1)))))


class _Slab:
    """Persistent tensors of one (batch, length) shape: cache and state."""

    def __init__(self, text_model, batch, length, device, dtype):
        config = text_model.config
        heads = config.attention_heads
        head_dim = config.embed_dim // heads
        layers = len(text_model.model.layers)

        def zeros(*shape, dtype=dtype):
            return torch.zeros(shape, dtype=dtype, device=device)

        self.batch, self.length = batch, length
        self.ready = False  # the step has run (compiled) for this shape
        # One tensor per layer and kind: a slot write into a view of one
        # big tensor is not done in place by inductor (it copies it all).
        self.kv = [zeros(batch, heads, length, head_dim)
                   for _ in range(2 * layers)]
        self.token = zeros(batch, dtype=torch.long)
        self.step = zeros(1, dtype=torch.long)
        self.width = zeros(1, dtype=torch.long)
        self.pos0 = zeros(batch, dtype=torch.long)
        self.valid = zeros(batch, length, dtype=torch.bool)
        self.done = zeros(batch, dtype=torch.bool)
        self.ends = torch.full((MAX_ENDS,), -1, dtype=torch.long,
                               device=device)
        self.out_tokens = zeros(batch, length, dtype=torch.long)
        self.out_logps = zeros(batch, length, dtype=torch.float32)
        self.args = (self.token, self.step, self.width, self.pos0,
                     self.valid, self.done, self.ends, self.out_tokens,
                     self.out_logps, *self.kv)
        for tensor in self.args:
            # Fixed addresses: CUDA graphs may mutate them in place.
            torch._dynamo.mark_static_address(tensor)


def _linear(hidden, module):
    """``module(hidden)``; a small weight as a reduction the compiler fuses."""
    if type(module) is not torch.nn.Linear:
        # bitsandbytes' Linear8bitLt/Linear4bit: int8 or packed 4-bit
        # weights that only their own forward (and kernels) can apply.
        return module(hidden)
    weight = module.weight
    if weight.numel() > SMALL_LINEAR:
        return torch.nn.functional.linear(hidden, weight, module.bias)
    out = (hidden[..., None, :] * weight).sum(-1)
    return out if module.bias is None else out + module.bias


class _DecodeStep(torch.nn.Module):
    """
    One greedy decode step over a _Slab, reading the checkpoint's modules.

    It computes what ``Kosmos2TextForCausalLM.forward`` computes for one
    token (the model's eager attention math), with the K/V of the new token
    written into the slab at its slot. It reads the model's parameters in
    place (no copies). (``freezing`` was tried: mkldnn-packed linears were
    slower at width 32 and would copy the weights once per graph.)
    """

    def __init__(self, text_model):
        super().__init__()
        self.text_model = text_model
        config = text_model.config
        self.heads = config.attention_heads
        self.head_dim = config.embed_dim // self.heads
        self.eps = config.layer_norm_eps

    def forward(self, args):
        """Feed the slab's token; write its K/V, next token and log-prob."""
        (token, step, width, pos0, valid, done, ends, out_tokens,
         out_logps), kv = args[:9], args[9:]
        layer_norm = torch.nn.functional.layer_norm
        decoder = self.text_model.model
        eps = self.eps
        batch, length = valid.shape
        slot = width + step  # (1,)
        hidden = decoder.embed_tokens(token[:, None]) * decoder.embed_scale
        table = decoder.embed_positions.weights
        hidden = hidden + table.index_select(0, pos0 + step)[:, None].to(
            hidden.dtype)
        dim = hidden.shape[-1:]
        slots = torch.arange(length, device=valid.device)
        live = valid & (slots[None, :] <= slot)
        mask = torch.zeros(live.shape, dtype=hidden.dtype, device=live.device)
        mask = mask.masked_fill(~live, torch.finfo(hidden.dtype).min)
        mask = mask[:, None, None, :]
        shape = (batch, 1, self.heads, self.head_dim)
        for index, layer in enumerate(decoder.layers):
            keys, values = kv[2 * index], kv[2 * index + 1]
            attn, ffn = layer.self_attn, layer.ffn
            norm = layer.self_attn_layer_norm
            residual = hidden
            hidden = layer_norm(hidden, dim, norm.weight, norm.bias, eps)
            query = _linear(hidden, attn.q_proj)
            key = _linear(hidden, attn.k_proj)
            value = _linear(hidden, attn.v_proj)
            keys.index_copy_(2, slot, key.view(shape).transpose(1, 2))
            values.index_copy_(2, slot, value.view(shape).transpose(1, 2))
            query = query.view(shape).transpose(1, 2)
            scores = torch.matmul(query, keys.transpose(-1, -2)) * attn.scaling
            probs = torch.softmax(scores + mask, dim=-1)
            out = torch.matmul(probs, values).transpose(1, 2)
            norm = attn.inner_attn_ln
            out = layer_norm(out.reshape(batch, 1, -1), dim, norm.weight,
                             norm.bias, eps)
            hidden = residual + _linear(out, attn.out_proj)
            residual = hidden
            norm = layer.final_layer_norm
            hidden = layer_norm(hidden, dim, norm.weight, norm.bias, eps)
            hidden = ffn.activation_fn(_linear(hidden, ffn.fc1))
            norm = ffn.ffn_layernorm
            hidden = layer_norm(hidden, hidden.shape[-1:], norm.weight,
                                norm.bias, eps)
            hidden = residual + _linear(hidden, ffn.fc2)
        norm = decoder.layer_norm
        hidden = layer_norm(hidden, dim, norm.weight, norm.bias, eps)
        logits = _linear(hidden[:, -1], self.text_model.lm_head)
        best_logp, best = torch.log_softmax(logits.float(), dim=-1).max(-1)
        column = step + 1
        out_tokens.index_copy_(1, column, best[:, None])
        out_logps.index_copy_(1, column, best_logp[:, None])
        now_done = done | (best[:, None] == ends[None, :]).any(-1)
        done.copy_(now_done)
        token.copy_(best)
        step.add_(1)
        return now_done.all()


class StaticDecoder:
    """
    Exact batched greedy decoding with a static cache and a compiled step.

    ``generate`` returns what ``decoding.greedy_generate`` returns. With
    ``compile=True`` the per-token step is one torch.compile graph per
    (batch bucket, length bucket); ``compile=False`` runs the same code
    eagerly. Call ``warmup`` before serving so no request compiles.
    """

    def __init__(self, model, compile=True,  # noqa: A002 (the engine's name)
                 max_length=2048, options=None, skip_guards=True):
        self.model = model
        self.text_model = model.text_model
        param = next(self.text_model.parameters())
        self.device, self.dtype = param.device, param.dtype
        decoder = self.text_model.model
        self.padding_idx = decoder.embed_positions.padding_idx
        # Grow the position table once, up front, so it never changes shape
        # under a compiled graph (the model grows it lazily the same way).
        positions = decoder.embed_positions
        needed = self.padding_idx + 2 + max_length
        if positions.weights.size(0) < needed:
            positions.make_weights(needed + positions.offset,
                                   positions.embedding_dim, self.padding_idx)
        self.max_length = max_length
        self.compiled = bool(compile)
        self._step = _DecodeStep(self.text_model).eval()
        self._run = self._step
        if self.compiled:
            options = {**COMPILE_OPTIONS, **(options or {})}
            if self.device.type == 'cuda':
                # The one difference on CUDA: mode="reduce-overhead", i.e.
                # CUDA graphs (torch.compile takes mode or options, not both).
                from torch._inductor import list_mode_options
                options.update(list_mode_options('reduce-overhead'))
            self._run = torch.compile(self._step, fullgraph=True,
                                      dynamic=False, options=options)
        self.skip_guards = self.compiled and skip_guards
        self._slabs = {}
        self._lock = threading.Lock()
        self.compiles = 0  # step shapes compiled so far (warmup included)
        # (thread id, shape) pairs that ran: torch records CUDA graphs per
        # thread, so a shape is warm only on the thread that ran it.
        self._warm = set()
        # Called (batch, length, seconds) when a generation met a shape not
        # warm on its thread and paid its compilation (or recording).
        self.on_cold_shape = None

    # -- shapes ----------------------------------------------------------
    def _slab(self, batch, length):
        key = (batch, length)
        if key not in self._slabs:
            if self.compiled:
                self.compiles += 1
            self._slabs[key] = _Slab(self.text_model, batch, length,
                                     self.device, self.dtype)
        return self._slabs[key]

    def shapes(self):
        """Return the (batch bucket, length bucket) shapes made so far."""
        return sorted(self._slabs)

    def _call(self, slab):
        torch.compiler.cudagraph_mark_step_begin()
        done = self._run(slab.args)
        slab.ready = True
        return done

    def _stance(self, slab):
        """
        Skip dynamo's guard evaluation for a shape already compiled.

        The step's guards check ~500 tensors (about 0.8 ms a step at 24
        layers, a third of the step). For a shape that ran once with full
        guards, the tensors are the same objects every time (our slab, the
        model's parameters), so only the guards telling the shapes apart
        are needed: torch's ``skip_guard_eval_unsafe`` stance, which is
        unsafe only if a parameter changes dtype, device or shape in place.
        """
        if self.skip_guards and slab.ready:
            return torch.compiler.set_stance(skip_guard_eval_unsafe=True)
        return contextlib.nullcontext()

    @torch.no_grad()
    def warmup(self, batch_sizes=BATCH_BUCKETS, lengths=DEFAULT_LENGTHS):
        """
        Make (and compile) the step for every batch size x length bucket.

        ``lengths`` are slot counts (rounded up to buckets). Run it on the
        thread that will generate: CUDA graphs belong to their thread. A
        shape already warm on this thread is skipped. Returns the seconds
        it took: compilation with ``compile=True``.
        """
        start = time.monotonic()
        me = threading.get_ident()
        with self._lock, self._limit():
            for batch in sorted({batch_bucket(b) for b in batch_sizes}):
                for length in sorted({length_bucket(n) for n in lengths}):
                    if (me, (batch, length)) in self._warm:
                        continue
                    self._warm.add((me, (batch, length)))
                    slab = self._slab(batch, length)
                    slab.valid.fill_(True)
                    slab.width.fill_(1)
                    slab.pos0.fill_(self.padding_idx + 1)
                    slab.token.fill_(self.padding_idx)
                    for _ in range(2):  # compile, then run the compiled code
                        slab.step.zero_()
                        slab.done.fill_(False)
                        self._call(slab)
        return time.monotonic() - start

    def _limit(self):
        # dynamo keeps 8 graphs per code object by default; allow one per
        # shape so no warmed shape falls back to eager.
        limit = max(8, 2 * len(BATCH_BUCKETS) * 8)
        return torch._dynamo.config.patch(recompile_limit=limit)

    # -- decoding ------------------------------------------------------------
    @torch.no_grad()
    def generate(self, image_embeds, prompts, max_new_tokens, eos_id, pad_id,
                 should_stop=None, stop_ids=(), on_step=None):
        """
        Greedily continue each prompt; return one Generated per prompt.

        Same contract and results as ``decoding.greedy_generate``. More rows
        than the largest batch bucket run in chunks (``should_stop`` is
        polled per chunk); more than MAX_ENDS - 1 stop ids, or a length past
        ``max_length``, use greedy_generate.
        """
        if max_new_tokens < 1:
            return [Generated([], []) for _ in prompts]
        ends = [eos_id, *stop_ids]
        width = max(len(p.input_ids) for p in prompts)
        if len(ends) > MAX_ENDS or \
                width + max_new_tokens - 1 > self.max_length:
            return greedy_generate(self.model, image_embeds, prompts,
                                   max_new_tokens, eos_id, pad_id,
                                   should_stop=should_stop,
                                   stop_ids=stop_ids, on_step=on_step)
        largest = BATCH_BUCKETS[-1]
        results = []
        for start in range(0, len(prompts), largest):
            results += self._generate(
                image_embeds[start:start + largest],
                prompts[start:start + largest], max_new_tokens, ends, pad_id,
                should_stop, on_step)
        return results

    def _prefill(self, image_embeds, ids, attn, img_mask, positions):
        """greedy_generate's first step: logits of the last slot, and cache."""
        from transformers import DynamicCache
        cache = DynamicCache(config=self.text_model.config)
        out = self.text_model(
            input_ids=ids, attention_mask=attn, position_ids=positions,
            image_embeds=image_embeds, image_embeds_position_mask=img_mask,
            use_cache=True, logits_to_keep=1,
            **{cache_keyword(type(self.text_model)): cache})
        best_logp, best = torch.log_softmax(
            out.logits[:, -1].float(), dim=-1).max(dim=-1)
        return best, best_logp, cache

    def _generate(self, image_embeds, prompts, max_new_tokens, ends, pad_id,
                  should_stop, on_step):
        ids, attn, img_mask = _collate(prompts, pad_id, self.device)
        batch, width = ids.shape
        positions = position_ids(attn, self.padding_idx)
        best, best_logp, cache = self._prefill(image_embeds, ids, attn,
                                               img_mask, positions)
        end_set = set(ends)
        done = torch.isin(best, torch.tensor(ends, device=self.device))
        if on_step is not None:
            on_step(1, lambda: best[:, None].tolist())
        if max_new_tokens == 1 or bool(done.all()) or \
                (should_stop is not None and should_stop()):
            return cut_at_ends(best[:, None].tolist(),
                               best_logp[:, None].exp().tolist(), end_set)
        with self._lock, self._limit():
            shape = (batch_bucket(batch),
                     length_bucket(width + max_new_tokens - 1))
            slab = self._slab(*shape)
            self._load(slab, cache, best, best_logp, done, positions, attn,
                       ends, pad_id)
            cold = self.compiled and \
                (threading.get_ident(), shape) not in self._warm
            count = 1
            start = time.monotonic()  # only read for a cold first step
            with self._stance(slab):
                for _ in range(max_new_tokens - 1):
                    all_done = self._call(slab)
                    if cold:  # the first step compiled (or recorded) it
                        cold = False
                        self._warm.add((threading.get_ident(), shape))
                        if self.on_cold_shape is not None:
                            self.on_cold_shape(*shape,
                                               time.monotonic() - start)
                    count += 1
                    if on_step is not None:
                        on_step(count, lambda: slab.out_tokens[
                            :batch, :count].tolist())
                    if bool(all_done) or \
                            (should_stop is not None and should_stop()):
                        break
            tokens = slab.out_tokens[:batch, :count].tolist()
            probs = slab.out_logps[:batch, :count].exp().tolist()
        return cut_at_ends(tokens, probs, end_set)

    def _load(self, slab, cache, best, best_logp, done, positions, attn,
              ends, pad_id):
        """Copy the prefill's cache and state into a slab's buffers."""
        batch, width = attn.shape
        for index, layer in enumerate(cache.layers):
            slab.kv[2 * index][:batch, :, :width].copy_(layer.keys)
            slab.kv[2 * index + 1][:batch, :, :width].copy_(layer.values)
        slab.token.fill_(pad_id)
        slab.token[:batch] = best
        slab.step.zero_()
        slab.width.fill_(width)
        slab.pos0.fill_(self.padding_idx + 1)
        slab.pos0[:batch] = positions[:, -1] + 1
        slab.valid.fill_(True)
        slab.valid[:batch, :width] = attn.bool()
        slab.done.fill_(True)
        slab.done[:batch] = done
        slab.ends.fill_(-1)
        slab.ends[:len(ends)] = torch.tensor(ends, device=self.device)
        slab.out_tokens[:batch, 0] = best
        slab.out_logps[:batch, 0] = best_logp
