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
Write a tiny, randomly initialised Kosmos-2 checkpoint for plumbing tests.

The checkpoint has the real Kosmos-2 architecture, processor and file layout
(safetensors weights, tokenizer, preprocessor config), so it loads through the
same ``from_pretrained`` path as ``microsoft/kosmos-2-patch14-224`` and needs no
network. Its weights are random: its captions are noise. It exists so that users'
CI and ours can exercise loading, prompting, generation, parsing and the ROS
plumbing in well under a second per frame on a CPU.
"""

from pathlib import Path

# A small offline corpus for the tokenizer: caption-like words so that prompts
# such as "An image of" tokenise into real pieces rather than <unk>.
_CORPUS = """
An image of a snowman warming himself by a fire. A red cup on the table.
The person on the left is holding a blue box. Question: What is this object?
Answer: It is a door. Is the door open? The robot sees a chair, a dog, a cat,
a bottle, a laptop, a keyboard and a mouse next to the window in the kitchen.
This is a picture of two people walking down the street with a car and a bus.
"""

# Kosmos-2 checkpoints resize straight to 224x224 (centre crop is then a no-op).
IMAGE_SIZE = 224
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _train_tokenizer(vocab_size):
    """Train a Unigram (sentencepiece-like) vocabulary offline, as XLM-R uses."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ['<s>', '<pad>', '</s>', '<unk>', '<mask>']
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token='<unk>')
    lines = [line for line in _CORPUS.splitlines() if line.strip()]
    tokenizer.train_from_iterator(lines * 20, trainer=trainer)
    # Scores are not exported by get_vocab; the Unigram model json has them.
    import json
    model = json.loads(tokenizer.to_str())['model']['vocab']
    scores = {piece: round(float(score), 6) for piece, score in model}
    # The trainer's output varies between calls (tied pieces in any order,
    # scores apart in their last bits), which gave every checkpoint made -
    # doctor's and bench's included - other ids for the same prompt. Sorted
    # on rounded scores, then text, every call gives one vocabulary.
    rest = sorted((piece for piece in scores if piece not in specials),
                  key=lambda piece: (-scores[piece], piece))
    return [(piece, scores.get(piece, 0.0)) for piece in specials + rest]


def make_tiny_model(out_dir, seed=0, hidden=32, layers=2):
    """
    Save a tiny random Kosmos-2 model and processor to ``out_dir``.

    Returns the output path. The text decoder and the vision encoder have
    ``layers`` layers of width ``hidden``; 64 latent image tokens and the
    224x224 input keep the prompt layout identical to the real checkpoint.
    """
    import torch
    import transformers
    from transformers import (
        Kosmos2Config, Kosmos2ForConditionalGeneration, Kosmos2Processor,
        XLMRobertaTokenizer)
    # The PIL processor by name where transformers has backends (5.2x on):
    # there, CLIPImageProcessor without torchvision falls back to it with a
    # warning. Earlier releases have the one class.
    image_processor_class = getattr(transformers, 'CLIPImageProcessorPil',
                                    None) or transformers.CLIPImageProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = XLMRobertaTokenizer(vocab=_train_tokenizer(vocab_size=300))
    image_processor = image_processor_class(
        size={'height': IMAGE_SIZE, 'width': IMAGE_SIZE},
        crop_size={'height': IMAGE_SIZE, 'width': IMAGE_SIZE},
        do_center_crop=True, resample=3, image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD)
    processor = Kosmos2Processor(image_processor, tokenizer)
    # The processor added the 11 tag tokens and 1024 <patch_index_*> tokens.
    vocab_size = len(processor.tokenizer)
    config = Kosmos2Config(
        text_config={
            'vocab_size': vocab_size, 'embed_dim': hidden, 'layers': layers,
            'ffn_dim': hidden * 2, 'attention_heads': 2,
            'max_position_embeddings': 512, 'dropout': 0.0,
            'attention_dropout': 0.0},
        vision_config={
            'hidden_size': hidden, 'intermediate_size': hidden * 2,
            'num_hidden_layers': layers, 'num_attention_heads': 2,
            'image_size': IMAGE_SIZE, 'patch_size': 14},
        latent_query_num=64)
    torch.manual_seed(seed)
    model = Kosmos2ForConditionalGeneration(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    (out / 'README.md').write_text(
        '# Tiny random Kosmos-2 (kosmos_ros)\n\n'
        'Randomly initialised weights for plumbing tests: captions are noise.\n'
        'Made by `kosmos-ros make-tiny-model`.\n')
    return out
