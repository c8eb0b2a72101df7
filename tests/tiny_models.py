"""Tiny random-weight diffusers pipelines built from configs, saved like real model directories.

They exercise the real backends' code paths (loading with local_files_only, the call signatures,
output handling); their pictures are noise.
"""

from __future__ import annotations

from pathlib import Path


def _word_tokenizer():
    """A small word-level fast tokenizer built in code."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for i, word in enumerate("the a of and with in to background subject scene light water sky".split()):
        vocab[word] = i + 3
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=64)


def _clip_tokenizer(owl: bool = False):
    """A character-level CLIP tokenizer; `owl` puts the pad token `!` at id 0 as OWL checkpoints do
    (OWL treats a query whose first id is 0 as padding)."""
    from transformers import CLIPTokenizer

    specials = ["!", "<|startoftext|>", "<|endoftext|>"] if owl else ["<|startoftext|>", "<|endoftext|>", "!"]
    vocab = {token: i for i, token in enumerate(specials)}
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz"):
        vocab[ch] = 3 + i
        vocab[ch + "</w>"] = 29 + i
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16, **({"pad_token": "!"} if owl else {}))


def build_tiny_inpaint(out: Path) -> Path:
    """A StableDiffusionInpaintPipeline with a few-thousand-parameter UNet, VAE and text encoder."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=9,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4, norm_num_groups=4, sample_size=32)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, hidden_size=16, intermediate_size=32,
                                        num_attention_heads=2, num_hidden_layers=2, pad_token_id=1, vocab_size=64))
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=_clip_tokenizer(),
                                          unet=unet, scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1),
                                          safety_checker=None, feature_extractor=None, image_encoder=None,
                                          requires_safety_checker=False)
    pipe.save_pretrained(out)
    return out


def _tiny_wan_parts():
    """The VAE, text encoder and tokenizer every tiny Wan pipeline shares."""
    import torch
    from diffusers import AutoencoderKLWan
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    text = UMT5EncoderModel(UMT5Config(vocab_size=32, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                       relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1))
    return {"vae": vae, "text_encoder": text, "tokenizer": _word_tokenizer()}


def build_tiny_wan_i2v(out: Path) -> Path:
    """A Wan2.2-style WanImageToVideoPipeline (no image encoder) with random tiny weights."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel

    parts = _tiny_wan_parts()
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=36, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32,
                                        num_layers=1, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32)
    WanImageToVideoPipeline(**parts, scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0), image_processor=None,
                            image_encoder=None, transformer=transformer).save_pretrained(out)
    return out


def build_tiny_vace(out: Path) -> Path:
    """A Wan-VACE control-video pipeline (WanVACEPipeline) with random tiny weights."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanVACEPipeline, WanVACETransformer3DModel

    parts = _tiny_wan_parts()
    transformer = WanVACETransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                            in_channels=16, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32,
                                            num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                            rope_max_seq_len=32, vace_layers=[0], vace_in_channels=96)
    WanVACEPipeline(**parts, transformer=transformer,
                    scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0)).save_pretrained(out)
    return out


def build_tiny_clip(out: Path) -> Path:
    """A transformers CLIPModel + CLIPProcessor directory with random tiny weights."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    config = CLIPConfig(text_config={"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 0,
                                     "eos_token_id": 1, "pad_token_id": 1},
                        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                        projection_dim=8)
    CLIPModel(config).save_pretrained(out)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  tokenizer=_clip_tokenizer()).save_pretrained(out)
    return out


def build_random_alexnet(out: Path) -> Path:
    """A torchvision AlexNet state dict with random weights, saved like the real backbone file."""
    import torch
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), out)
    return out


# -- vision-language model and open-vocabulary detectors (transformers), built fully offline ------------------------

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# the chat template of Qwen2-VL / Qwen2.5-VL-Instruct (adds the default system prompt)
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tiny_qwen25vl(out: Path) -> Path:
    """A Qwen2.5-VL directory (model, processor, byte-level tokenizer with Qwen's special tokens) with
    random tiny weights; it loads through AutoProcessor / AutoModelForImageTextToText like a real one."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tok = Qwen2Tokenizer(vocab={c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}, merges=[])
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS[1:]})  # <|endoftext|> exists already
    ids = {s: tok.convert_tokens_to_ids(s) for s in QWEN_SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.sequence_bias = [[[ids["<|im_end|>"]], 0.3]]  # replies end after a few tokens
    size = {"shortest_edge": 4 * 28 * 28, "longest_edge": 64 * 28 * 28}  # few image tokens
    Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2,
                                                              size=size),
                        video_processor=Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2,
                                                              size=size),
                        tokenizer=tok, chat_template=QWEN_CHAT_TEMPLATE).save_pretrained(out)
    model.save_pretrained(out)
    return out


def build_tiny_owlv2(out: Path) -> Path:
    """An OWLv2 open-vocabulary detector directory with random tiny weights."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tok = _clip_tokenizer(owl=True)
    torch.manual_seed(0)
    config = Owlv2Config(text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                          num_attention_heads=2, max_position_embeddings=16, bos_token_id=1,
                                          eos_token_id=2, pad_token_id=0),
                         vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, image_size=64, patch_size=16),
                         projection_dim=32)
    Owlv2ForObjectDetection(config).save_pretrained(out)
    Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}),
                   tokenizer=tok).save_pretrained(out)
    return out


def build_tiny_grounding_dino(out: Path) -> Path:
    """A Grounding DINO directory with random tiny weights. Its WordPiece vocabulary puts [CLS], [SEP],
    '.' and '?' at bert-base-uncased's ids, which the model code hard-codes."""
    import torch
    from transformers import (BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor)

    vocab = [f"[unused{i}]" for i in range(1100)]
    vocab[0], vocab[100], vocab[101], vocab[102], vocab[103], vocab[1012], vocab[1029] = \
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?"
    words = ["person", "bicycle", "chair", "easel", "a"] + list("abcdefghijklmnopqrstuvwxyz") + \
        ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    free = [i for i in range(104, 1100) if vocab[i].startswith("[unused") and i not in (1012, 1029)]
    for i, word in zip(free, words):
        vocab[i] = word
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, model_max_length=256)
    torch.manual_seed(0)
    config = GroundingDinoConfig(
        backbone_config=dict(model_type="swin", image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1],
                             num_heads=[1, 1, 1, 1], window_size=4, out_indices=[2, 3, 4]),
        text_config=dict(model_type="bert", vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=256),
        d_model=32, num_queries=20, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=2, decoder_n_points=2,
        num_feature_levels=4, max_text_len=256)
    GroundingDinoForObjectDetection(config).save_pretrained(out)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 112}),
                           tokenizer=tok).save_pretrained(out)
    return out


def build_tiny_wan_t2v(out: Path) -> Path:
    """A WanPipeline (Wan2.1-T2V class: the `lora` training backend's base) with random tiny weights."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    parts = _tiny_wan_parts()
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=16, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32)
    WanPipeline(**parts, transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0)
                ).save_pretrained(out)
    return out
