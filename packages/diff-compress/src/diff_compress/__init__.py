"""diff-compress: learned image compression with a real bitstream and a diffusion decoder.

Stage 1 is an MSE codec (mean-scale hyperprior, arXiv 1809.02736, GDN transforms) whose latents
are entropy-coded with constriction into a versioned, checksummed container; stage 2 is a
diffusion decoder (HFD, arXiv 2305.18231) on diff-pixel's backbone conditioned on the MSE
reconstruction, sampled through diff-core's one driver.
"""

from diff_compress.bitstream import HEADER_BYTES, Header, pack, unpack
from diff_compress.codec import (
    PRESETS,
    SIZES,
    CodecConfig,
    CodecOutput,
    CodingTables,
    MSECodec,
    export_coding_tables,
    rd_loss,
)
from diff_compress.coder import decode_symbols, encode_symbols, ideal_bits
from diff_compress.data import TEST_PHOTOS, TRAIN_PHOTOS, codec_source, offline_photos
from diff_compress.decoder import (
    DiffusionDecoder,
    DiffusionDecoderConfig,
    decode_diffusion,
    decoder_loss,
    posterior_sample,
    schedule_of,
)
from diff_compress.digits import (
    DIGITS_DECODER_LMBDA,
    DIGITS_RECIPE,
    digits_decoder_figures,
    train_digits_models,
)
from diff_compress.entropy_models import (
    FactorizedPrior,
    GaussianConditional,
    scale_index,
    scale_table,
)
from diff_compress.errors import BitstreamError, EncodeError, NonFiniteError
from diff_compress.flow import FlowSchedule, flow_weighting
from diff_compress.gdn import GDN
from diff_compress.metrics import (
    MSSSIM,
    bd_psnr,
    bd_rate,
    bits_per_pixel,
    feature_distance,
    hf_energy_ratio,
    ms_ssim,
    patch_features,
    psnr,
    ssim,
)
from diff_compress.pipeline import (
    Compressor,
    EncodeStats,
    compress_file,
    decompress_file,
    read_image,
    to_uint8,
)
from diff_compress.quantization import add_uniform_noise, quantize, ste_round
from diff_compress.testing import (
    FuzzReport,
    assert_lossless_roundtrip,
    fuzz_decoder,
    gaussian_posterior_oracle,
    rate_accounting,
)
from diff_compress.tiling import TiledDenoiser, blend_weights
from diff_compress.train import load_codec, load_decoder, train_codec, train_decoder
from diff_compress.transforms import (
    AnalysisTransform,
    HyperAnalysis,
    HyperSynthesis,
    SynthesisTransform,
)

__version__ = "0.1.0"

__all__ = [
    "DIGITS_DECODER_LMBDA",
    "DIGITS_RECIPE",
    "GDN",
    "HEADER_BYTES",
    "PRESETS",
    "SIZES",
    "TEST_PHOTOS",
    "TRAIN_PHOTOS",
    "AnalysisTransform",
    "BitstreamError",
    "CodecConfig",
    "CodecOutput",
    "CodingTables",
    "Compressor",
    "DiffusionDecoder",
    "DiffusionDecoderConfig",
    "EncodeError",
    "EncodeStats",
    "FactorizedPrior",
    "FlowSchedule",
    "FuzzReport",
    "GaussianConditional",
    "Header",
    "HyperAnalysis",
    "HyperSynthesis",
    "MSECodec",
    "MSSSIM",
    "NonFiniteError",
    "SynthesisTransform",
    "TiledDenoiser",
    "__version__",
    "add_uniform_noise",
    "assert_lossless_roundtrip",
    "bd_psnr",
    "bd_rate",
    "bits_per_pixel",
    "blend_weights",
    "codec_source",
    "compress_file",
    "decode_diffusion",
    "decode_symbols",
    "decoder_loss",
    "digits_decoder_figures",
    "decompress_file",
    "encode_symbols",
    "export_coding_tables",
    "feature_distance",
    "flow_weighting",
    "fuzz_decoder",
    "gaussian_posterior_oracle",
    "hf_energy_ratio",
    "ideal_bits",
    "load_codec",
    "load_decoder",
    "ms_ssim",
    "patch_features",
    "offline_photos",
    "pack",
    "posterior_sample",
    "psnr",
    "quantize",
    "rate_accounting",
    "rd_loss",
    "read_image",
    "scale_index",
    "scale_table",
    "schedule_of",
    "ssim",
    "ste_round",
    "to_uint8",
    "train_codec",
    "train_decoder",
    "train_digits_models",
    "unpack",
]
