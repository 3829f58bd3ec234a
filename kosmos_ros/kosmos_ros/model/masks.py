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
Kosmos-2's text attention mask, made safe in fp16.

transformers builds the decoder's additive mask as padding mask + causal
mask, each ``finfo.min`` where masked, and its eager attention adds it to
the scores in the model's dtype. In fp16 ``finfo.min + finfo.min`` is -inf,
and ``score + finfo.min`` is -inf for any score below about -16. A left
padding row (phrases of different lengths in one batch: standing queries,
``locate`` with several phrases) masks every key it has, so when its
scores overflow its softmax is 0/0 = NaN; its NaN hidden state becomes NaN
keys and values in the next layer, and 0 x NaN puts NaN in every live row
of the batch. Halving the mask (clamping it at ``finfo.min / 2``) keeps
every sum finite for any score the fp16 model itself can hold, and a
masked key still gets exactly zero weight: exp(-32752) is 0 in any float.
bf16 and fp32 have the range of fp32: nothing to do.
"""

import functools

import torch


def guard_fp16_mask(model):
    """
    Clamp the text decoder's attention mask of an fp16 Kosmos-2 model.

    Returns True when the guard is in place. The mask is built by the
    decoder's ``_prepare_decoder_attention_mask`` (transformers 5.x); a
    release without it builds the mask some other way, and the fp16
    padding test (test_engine.py) tells whether that way needs a guard.
    """
    decoder = model.text_model.model
    build = getattr(decoder, '_prepare_decoder_attention_mask', None)
    if build is None or getattr(build, 'kosmos_guarded', False):
        return build is not None

    @functools.wraps(build)
    def clamped(*args, **kwargs):
        mask = build(*args, **kwargs)
        if mask is not None and mask.dtype == torch.float16:
            mask = mask.clamp(min=torch.finfo(torch.float16).min / 2)
        return mask
    clamped.kosmos_guarded = True
    decoder._prepare_decoder_attention_mask = clamped
    return True
