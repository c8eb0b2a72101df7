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


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz"):
        vocab[ch] = 3 + i
        vocab[ch + "</w>"] = 29 + i
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


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
