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
Greedy decoding for Kosmos-2 that is exact when batched.

transformers' ``Kosmos2ForConditionalGeneration.generate`` rebuilds position
ids from the cache length after the first step, so a left-padded row drifts
by its padding and a batch no longer matches one-at-a-time generation. Here
position ids are counted from the attention mask at every step, which gives
each row exactly the positions it would have alone. The loop also returns the
probability of every chosen token (the box scores are made from them) and
takes image embeddings as input, so a frame's vision encoding can be reused.
"""

from dataclasses import dataclass
import functools
import inspect

import torch


@dataclass
class Prompt:
    """One tokenised prompt: ids and the mask of its image-token slots."""

    input_ids: list
    image_mask: list


@dataclass
class Generated:
    """Generated token ids (prompt excluded) and each one's probability."""

    token_ids: list
    probs: list


@torch.no_grad()
def encode_images(model, pixel_values):
    """Vision encoder + projection: (N, 3, H, W) -> (N, latent, embed_dim)."""
    vision = model.vision_model(pixel_values=pixel_values)
    embeds = model.vision_model.model.post_layernorm(vision[0])
    embeds = torch.nn.functional.normalize(embeds, dim=-1)
    embeds, _ = model.image_to_text_projection(embeds)
    return embeds


@functools.lru_cache(maxsize=None)
def cache_keyword(text_model_class):
    """
    Return the forward keyword that takes the KV cache, from its signature.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name
    warns, and goes in 5.40); 5.20.2, the newest release for Python 3.10,
    knows only the old one. Called once at load (``load_model``) so that a
    release that knows neither fails there, not in the first caption.
    """
    parameters = inspect.signature(text_model_class.forward).parameters
    for name in ('cache', 'past_key_values'):
        if name in parameters:
            return name
    raise TypeError('%s.forward takes neither `cache` nor `past_key_values`: '
                    'this transformers release is not supported'
                    % text_model_class.__name__)


def _collate(prompts, pad_id, device):
    """Left-pad prompts into (ids, attention mask, image mask) tensors."""
    width = max(len(p.input_ids) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(prompts), width), dtype=torch.long)
    img = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        n = len(prompt.input_ids)
        ids[row, width - n:] = torch.tensor(prompt.input_ids)
        attn[row, width - n:] = 1
        img[row, width - n:] = torch.tensor(prompt.image_mask, dtype=torch.bool)
    return ids.to(device), attn.to(device), img.to(device)


def position_ids(attn, padding_idx):
    """
    Position ids of left-padded rows from their attention mask.

    A real token's position is the number of real tokens up to it plus
    ``padding_idx`` (what Kosmos-2 computes for an unpadded row); pads sit
    at ``padding_idx``. So each row gets exactly the positions it has alone.
    """
    return (attn.cumsum(-1) * attn + padding_idx).long()


def cut_at_ends(tokens, probs, ends):
    """Cut each row of token ids and probabilities after its first end."""
    results = []
    for row_tokens, row_probs in zip(tokens, probs):
        end = next((k + 1 for k, token in enumerate(row_tokens)
                    if token in ends), len(row_tokens))
        results.append(Generated(row_tokens[:end], row_probs[:end]))
    return results


@torch.no_grad()
def greedy_generate(model, image_embeds, prompts, max_new_tokens,
                    eos_id, pad_id, should_stop=None, stop_ids=(),
                    on_step=None):
    """
    Greedily continue each prompt; return one Generated per prompt.

    ``image_embeds`` has one row per prompt. Generation of a row ends at
    ``eos_id`` or at any of ``stop_ids`` (which is kept), or after
    ``max_new_tokens``. ``should_stop`` is polled between steps so a
    shutdown or a cancelled request does not wait for a long generation.
    ``on_step(count, read)`` hears each step: ``read()`` returns every
    row's token ids so far (called only when wanted: it syncs the device).
    """
    from transformers import DynamicCache

    text_model = model.text_model
    padding_idx = text_model.model.embed_positions.padding_idx
    device = image_embeds.device
    ids, attn, img_mask = _collate(prompts, pad_id, device)
    batch, width = ids.shape
    positions = position_ids(attn, padding_idx)
    # Everything a step needs is sliced from tensors made once, so the loop
    # costs a few tensor ops per token on the host.
    attn = torch.cat([attn, attn.new_ones((batch, max_new_tokens))], dim=1)
    next_pos = positions[:, -1:] + torch.arange(
        1, max_new_tokens + 1, device=device)
    # The cache is filled in place: the same object serves every step.
    cache = {cache_keyword(type(text_model)):
             DynamicCache(config=text_model.config)}
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    ends = torch.tensor([eos_id, *stop_ids], device=device)
    tokens, logps = [], []
    step_ids, step_pos = ids, positions
    step_img, step_embeds = img_mask, image_embeds
    for step in range(max_new_tokens):
        out = text_model(
            input_ids=step_ids, attention_mask=attn[:, :width + step],
            position_ids=step_pos, image_embeds=step_embeds,
            image_embeds_position_mask=step_img, use_cache=True,
            logits_to_keep=1, **cache)
        # A row past its EOS keeps decoding (its tokens are cut below); that
        # never touches other rows, whose attention masks exclude it.
        best_logp, best = torch.log_softmax(
            out.logits[:, -1].float(), dim=-1).max(dim=-1)
        tokens.append(best)
        logps.append(best_logp)
        done |= torch.isin(best, ends)
        if on_step is not None:
            on_step(step + 1, lambda: torch.stack(tokens, 1).tolist())
        if bool(done.all()) or (should_stop is not None and should_stop()):
            break
        step_ids = best[:, None]
        step_pos = next_pos[:, step:step + 1]
        step_img, step_embeds = None, None
    tokens = torch.stack(tokens, 1).tolist() if tokens else [[]] * batch
    probs = torch.stack(logps, 1).exp().tolist() if logps else [[]] * batch
    return cut_at_ends(tokens, probs, set(ends.tolist()))
