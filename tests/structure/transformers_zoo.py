"""Small random-weight transformers models for the coverage test (imported by name)."""

from __future__ import annotations

from collections.abc import Callable

import torch

TEXT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=32,
)
VISION = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
    num_channels=3,
)


def _ids() -> torch.Tensor:
    return torch.randint(1, 99, (1, 8), generator=torch.Generator().manual_seed(0))


def _pixels(size: int = 32) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def zoo() -> dict[str, Callable[[], tuple[torch.nn.Module, torch.Tensor]]]:
    """name -> builder of (model in eval mode, example input)."""
    import transformers as T

    def text(model_cls, config_cls, **kw):
        return lambda: (model_cls(config_cls(**{**TEXT, **kw})).eval(), _ids())

    def vision(model_cls, config_cls, size=32, **kw):
        return lambda: (model_cls(config_cls(**kw)).eval(), _pixels(size))

    stages = dict(hidden_sizes=[8, 16], depths=[1, 1], num_channels=3, num_stages=2)
    out = {
        "bert": text(T.BertModel, T.BertConfig),
        "roberta": text(T.RobertaModel, T.RobertaConfig, pad_token_id=1),
        "electra": text(T.ElectraModel, T.ElectraConfig, embedding_size=32),
        "albert": text(T.AlbertModel, T.AlbertConfig, embedding_size=16),
        "distilbert": lambda: (
            T.DistilBertModel(
                T.DistilBertConfig(
                    vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=32
                )
            ).eval(),
            _ids(),
        ),
        "gpt2": lambda: (
            T.GPT2Model(
                T.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=32, use_cache=False)
            ).eval(),
            _ids(),
        ),
        "t5-encoder": lambda: (
            T.T5EncoderModel(
                T.T5Config(vocab_size=99, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, use_cache=False)
            ).eval(),
            _ids(),
        ),
        "vit": vision(T.ViTModel, T.ViTConfig, **VISION),
        "deit": vision(T.DeiTModel, T.DeiTConfig, **VISION),
        "beit": vision(T.BeitModel, T.BeitConfig, **VISION),
        "swin": vision(
            T.SwinModel,
            T.SwinConfig,
            image_size=32,
            patch_size=4,
            embed_dim=16,
            depths=[1, 1],
            num_heads=[2, 4],
            window_size=4,
        ),
        "convnext": vision(T.ConvNextModel, T.ConvNextConfig, **stages),
        "resnet": vision(
            T.ResNetModel,
            T.ResNetConfig,
            embedding_size=8,
            layer_type="basic",
            **{k: v for k, v in stages.items() if k != "num_stages"},
        ),
        "regnet": vision(
            T.RegNetModel,
            T.RegNetConfig,
            embedding_size=8,
            groups_width=4,
            **{k: v for k, v in stages.items() if k != "num_stages"},
        ),
        "mobilenet_v2": vision(T.MobileNetV2Model, T.MobileNetV2Config, image_size=32, depth_multiplier=0.25),
        "efficientnet": vision(
            T.EfficientNetModel,
            T.EfficientNetConfig,
            image_size=32,
            width_coefficient=0.25,
            depth_coefficient=0.25,
            hidden_dim=64,
        ),
        "poolformer": vision(
            T.PoolFormerModel,
            T.PoolFormerConfig,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            num_encoder_blocks=2,
            patch_sizes=[7, 3],
            strides=[4, 2],
            padding=[2, 1],
            num_channels=3,
        ),
    }
    return out


GQA = dict(
    vocab_size=99,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=32,
    use_cache=False,
)
GPT2 = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=32, use_cache=False, pad_token_id=0)


def head_zoo() -> dict[str, Callable[[], tuple[torch.nn.Module, torch.Tensor]]]:
    """name -> builder of the models whose attention heads are pruned (the README's heads column)."""
    import transformers as T

    return {
        "bert": lambda: (T.BertModel(T.BertConfig(**TEXT)).eval(), _ids()),
        "vit": lambda: (T.ViTModel(T.ViTConfig(**VISION)).eval(), _pixels()),
        "gpt2-lm": lambda: (T.GPT2LMHeadModel(T.GPT2Config(**GPT2)).eval(), _ids()),
        "gpt2": lambda: (T.GPT2Model(T.GPT2Config(**GPT2)).eval(), _ids()),
        "gpt2-cls": lambda: (T.GPT2ForSequenceClassification(T.GPT2Config(**GPT2)).eval(), _ids()),
        "llama-gqa": lambda: (T.LlamaForCausalLM(T.LlamaConfig(**GQA)).eval(), _ids()),
        "qwen2-gqa": lambda: (T.Qwen2ForCausalLM(T.Qwen2Config(**GQA)).eval(), _ids()),
    }
