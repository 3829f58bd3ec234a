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
Load a Kosmos-2 checkpoint through transformers' own classes.

Robots often run offline, so a model that cannot be found fails at once with
a message that says what to do, instead of a stack trace from the hub client.
Remote code is never trusted; safetensors weights are preferred.
"""

from dataclasses import dataclass
import importlib.util
import os
from pathlib import Path
import pickle
import socket

DEFAULT_MODEL = 'microsoft/kosmos-2-patch14-224'
DEVICES = ('auto', 'cpu', 'cuda')
DTYPES = ('auto', 'fp32', 'fp16', 'bf16')
QUANTIZATIONS = ('none', 'int8wo', 'w8a8', '8bit', '4bit')
# Ours (int8_weights.py): int8 weights, bf16 arithmetic, no bitsandbytes.
INT8_WEIGHTS = ('int8wo', 'w8a8')
ATTENTION = ('auto', 'eager', 'sdpa')
HUB_PROBE_SECONDS = 5.0
# bitsandbytes' quantization converts the text decoder's linears only (int8wo
# those and lm_head; w8a8 the vision encoder's too, for int8 GEMMs:
# int8_weights.py). The vision tower and the image-to-text projection run
# once per frame, not per token (int8 or 4-bit weights there save no decode
# time, and their error reaches every box); lm_head is what transformers
# keeps by default (tied to the embeddings).
KEEP_IN_DTYPE = ('vision_model', 'image_to_text_projection', 'lm_head')


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says how to fix it."""


@dataclass
class ModelOptions:
    """How to load the model: what, where, and in which precision."""

    model: str = DEFAULT_MODEL
    device: str = 'auto'
    dtype: str = 'auto'
    quantization: str = 'none'
    attn_implementation: str = 'auto'
    local_files_only: bool = False
    # Pickle weights can run code when loaded: off unless the user says so.
    allow_unsafe_pickle: bool = False

    def validate(self):
        """Raise ValueError naming the first invalid option."""
        if not self.model:
            raise ValueError('model must name a hub id or a local folder')
        if not (self.device in DEVICES or self.device.startswith('cuda:')):
            raise ValueError('device must be auto, cpu, cuda or cuda:N, got %r'
                             % self.device)
        for name, allowed in (('dtype', DTYPES),
                              ('quantization', QUANTIZATIONS),
                              ('attn_implementation', ATTENTION)):
            if getattr(self, name) not in allowed:
                raise ValueError('%s must be one of %s, got %r' % (
                    name, ', '.join(allowed), getattr(self, name)))
        why = precision_conflict(self.dtype, self.quantization)
        if why:
            raise ValueError(why)


def precision_conflict(dtype, quantization, compiled=False):
    """
    Return why dtype, quantization and compile cannot go together, or None.

    LLM.int8 (8bit) multiplies in fp16 whatever the model's dtype: with
    fp32 or bf16 every linear would cast its input (and bitsandbytes log a
    warning per call), so 8bit takes fp16 ('auto' is fp16 with it). Its
    matmul is an autograd Function even for inference, which torch.compile
    traces only with a DeprecationWarning that a later torch makes an
    error, so 8bit decodes eagerly; 4bit's inference path is a custom op
    the compiler takes as it is.
    """
    if quantization in INT8_WEIGHTS and dtype not in ('auto', 'bf16'):
        return 'quantization %s computes in bf16 (its CPU kernel is ' \
            '10-15x slower with fp32 or fp16 activations): set dtype to ' \
            'bf16 or auto, got %s' % (quantization, dtype)
    if quantization == '8bit' and dtype not in ('auto', 'fp16'):
        return 'quantization 8bit computes in fp16 (LLM.int8): set dtype ' \
            'to fp16 or auto, got %s' % dtype
    if quantization == '8bit' and compiled:
        return 'quantization 8bit decodes eagerly (the int8 matmul of ' \
            'bitsandbytes does not compile cleanly): set compile off, or ' \
            'use quantization 4bit or none with compile'
    return None


def resolve_device(device):
    """Map 'auto' to cuda when a GPU is visible, else cpu."""
    import torch
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ModelLoadError(
            'device %r was asked for but torch sees no CUDA GPU (torch %s); '
            'use device:=cpu or install a CUDA build of torch'
            % (device, torch.__version__))
    return device


def resolve_dtype(dtype, device, quantization='none'):
    """
    Map a dtype name to torch.

    'auto' is fp16 on CUDA and fp32 on CPU, fp16 with 8bit and bf16 with
    int8wo or w8a8 anywhere.
    """
    import torch
    if dtype == 'auto' and quantization in INT8_WEIGHTS:
        dtype = 'bf16'
    elif dtype == 'auto':
        dtype = 'fp16' if device.startswith('cuda') or \
            quantization == '8bit' else 'fp32'
    return {'fp32': torch.float32, 'fp16': torch.float16,
            'bf16': torch.bfloat16}[dtype]


def _quantization_config(quantization, device, dtype):
    if quantization == 'none' or quantization in INT8_WEIGHTS:
        return None
    if importlib.util.find_spec('bitsandbytes') is None:
        raise ModelLoadError(
            'quantization=%s needs the bitsandbytes package: pip install '
            'bitsandbytes (or use quantization:=none)' % quantization)
    from transformers import BitsAndBytesConfig
    if quantization == '8bit':
        return BitsAndBytesConfig(load_in_8bit=True,
                                  llm_int8_skip_modules=list(KEEP_IN_DTYPE))
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4',
                              bnb_4bit_compute_dtype=dtype,
                              llm_int8_skip_modules=list(KEEP_IN_DTYPE))


def _missing_model_message(model, error):
    cache = os.environ.get('HF_HUB_CACHE') or os.environ.get('HF_HOME') or \
        '~/.cache/huggingface'
    offline = os.environ.get('HF_HUB_OFFLINE', '0') not in ('', '0')
    if _is_path(model) or Path(os.path.expanduser(model)).exists():
        return ('model folder %r does not exist or is not a Kosmos-2 '
                'checkpoint (%s). Pass a folder holding config.json, '
                'model.safetensors and the processor files, e.g. one made by '
                '`kosmos-ros make-tiny-model DIR` or saved with '
                'save_pretrained().' % (model, error))
    return ('could not load Kosmos-2 model %r (%s). It is not in the '
            'Hugging Face cache (%s)%s. On a machine with network run '
            '`hf download %s` (or `huggingface-cli download %s`), copy the '
            'cache to the robot and set HF_HUB_OFFLINE=1; or pass a local '
            'folder with model:=/path/to/checkpoint.'
            % (model, _short(error), cache,
               ' and HF_HUB_OFFLINE is set' if offline else
               ' and the hub could not be reached', model, model))


def _offline_fallback(model):
    """
    Probe the hub once, briefly, before transformers' long retries.

    Unreachable (an offline robot): use the cache if it holds the model,
    else fail now with what to do. Returns whether to stay offline.
    """
    from urllib.parse import urlsplit
    from huggingface_hub import constants, try_to_load_from_cache
    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (
            443 if url.scheme == 'https' else 80)), HUB_PROBE_SECONDS).close()
        return False
    except OSError as error:
        if isinstance(try_to_load_from_cache(model, 'config.json'), str):
            return True
        raise ModelLoadError(_missing_model_message(model, error)) from error


def _cached_snapshot(model):
    """
    Return the Hugging Face cache's folder of a hub model, to load offline.

    Offline, the model is loaded from that folder, so that no request is
    made at all: transformers 5.0 still asks the hub for optional files
    under local_files_only, and huggingface_hub 1.3 to 1.16 (at least) then
    fails with a closed-client RuntimeError instead of saying what to do.
    """
    from huggingface_hub import try_to_load_from_cache
    config = try_to_load_from_cache(model, 'config.json')
    if not isinstance(config, str):
        raise ModelLoadError(_missing_model_message(
            model, FileNotFoundError('not in the Hugging Face cache')))
    return str(Path(config).parent)


def _refuse_pickle_only(folder):
    """Refuse a local checkpoint whose weights exist only as pickle."""
    if not folder.is_dir() or any(folder.glob('*.safetensors')):
        return
    pickles = sorted(p.name for p in folder.glob('*.bin'))
    if pickles:
        raise ModelLoadError(
            'checkpoint %s holds its weights only as pickle (%s), which can '
            'run code when loaded; kosmos_ros loads safetensors only. '
            'Convert it once, on a machine and from a source you trust: '
            'python -c "from transformers import '
            'Kosmos2ForConditionalGeneration as M; '
            "M.from_pretrained('%s', use_safetensors=False).save_pretrained("
            "'%s')\" - or, if you trust this file, opt in with "
            'allow_unsafe_pickle:=true (node) / --allow-unsafe-pickle (CLI).'
            % (folder, ', '.join(pickles), folder, folder))


def _is_path(model):
    """Hub ids look like 'org/name'; anything path-like is a local folder."""
    return model.startswith(('/', '.', '~')) or model.count('/') > 1


def _short(error):
    text = str(error).strip().splitlines()
    return '%s: %s' % (type(error).__name__, text[0] if text else '')


def load_model(options):
    """
    Load model and processor; return (model, processor, device, dtype).

    Raises ModelLoadError with a how-to-fix message when the checkpoint
    cannot be found, and ValueError for invalid options.
    """
    options.validate()
    import torch  # fail here, clearly, if torch is missing
    from transformers import AutoProcessor, Kosmos2ForConditionalGeneration

    from .decoding import cache_keyword

    device = resolve_device(options.device)
    if options.quantization == 'w8a8' and device != 'cpu':
        raise ModelLoadError(
            'quantization w8a8 is a CPU format (int8 GEMMs of oneDNN); on '
            '%s use int8wo or 8bit' % device)
    dtype = resolve_dtype(options.dtype, device, options.quantization)
    quant = _quantization_config(options.quantization, device, dtype)
    model_path = os.path.expanduser(options.model)
    if Path(model_path).exists():
        local = True
    else:
        local = options.local_files_only
        if _is_path(options.model):
            raise ModelLoadError(_missing_model_message(
                options.model, FileNotFoundError('no such folder')))
        if not local:
            local = _offline_fallback(options.model)
        if local:
            model_path = _cached_snapshot(options.model)
    if local and not options.allow_unsafe_pickle:
        _refuse_pickle_only(Path(model_path))
    kwargs = {'local_files_only': local, 'trust_remote_code': False}
    # Safetensors only (weights are data), unless the user opted in.
    model_kwargs = {**kwargs, 'dtype': dtype, 'use_safetensors':
                    None if options.allow_unsafe_pickle else True}
    if options.attn_implementation != 'auto':
        model_kwargs['attn_implementation'] = options.attn_implementation
    if quant is not None:
        model_kwargs.update(quantization_config=quant,
                            device_map={'': device})
    try:
        # The PIL image processor, by name: frames go through preprocess.py,
        # which only reads its settings, and torchvision (the default backend
        # from transformers 5.2x on, else a fallback that warns) is not a
        # dependency. Releases before the backends ignore the argument.
        processor = AutoProcessor.from_pretrained(model_path, backend='pil',
                                                  **kwargs)
        model = Kosmos2ForConditionalGeneration.from_pretrained(
            model_path, **model_kwargs)
    except (OSError, ValueError) as error:
        raise ModelLoadError(_missing_model_message(options.model, error)) \
            from error
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ModelLoadError('cannot load the weights of %r: %s (a damaged '
                             'or crafted checkpoint?)' % (
                                 options.model, _short(error))) from error
    try:
        cache_keyword(type(model.text_model))
    except TypeError as error:
        raise ModelLoadError(str(error)) from error
    if options.quantization in INT8_WEIGHTS:
        from .int8_weights import quantize_text_model, quantize_vision_model
        w8a8 = options.quantization == 'w8a8'
        quantize_text_model(model.text_model, int8_compute=w8a8)
        if w8a8:
            quantize_vision_model(model.vision_model)
    if quant is None:
        model = model.to(device)
        if device == 'cpu' and dtype in (torch.float32, torch.bfloat16):
            from .cpu_gemv import use_gemv
            use_gemv(model.text_model)  # one stream's decode step in gemv.c
    if dtype == torch.float16:
        from .masks import guard_fp16_mask
        guard_fp16_mask(model)  # left padding would overflow to NaN
    model.eval()
    return model, processor, device, dtype
