"""diff_pixel.nn: the JAX/Flax NNX building blocks shared by every JAX package of the monorepo."""

from diff_pixel.nn.attention import (
    Attention,
    CrossAttention,
    force_attention_impl,
    resolve_attention_impl,
)
from diff_pixel.nn.conditioning import AdaLN, LogSNREmbedding, broadcast_modulation, modulate
from diff_pixel.nn.dropout import dropout
from diff_pixel.nn.init import device_init
from diff_pixel.nn.mlp import MLP
from diff_pixel.nn.norm import layer_norm
from diff_pixel.nn.patch import PatchEmbed, PatchUnembed, depth_to_space
from diff_pixel.nn.resample import Downsample, Upsample
from diff_pixel.nn.resblock import ResBlock, group_count
from diff_pixel.nn.rope import grid_positions, rope, rope_pairs
from diff_pixel.nn.transformer import TransformerBlock
from diff_pixel.nn.wavelet import dwt53, idwt53

RoPE = rope  # the spec's table name for the rotary embedding function

__all__ = [
    "MLP",
    "AdaLN",
    "Attention",
    "CrossAttention",
    "Downsample",
    "LogSNREmbedding",
    "PatchEmbed",
    "PatchUnembed",
    "ResBlock",
    "RoPE",
    "TransformerBlock",
    "Upsample",
    "broadcast_modulation",
    "depth_to_space",
    "device_init",
    "dropout",
    "dwt53",
    "force_attention_impl",
    "grid_positions",
    "group_count",
    "idwt53",
    "layer_norm",
    "modulate",
    "resolve_attention_impl",
    "rope",
    "rope_pairs",
]
