"""diff-semantica: image-conditioned diffusion with a frozen encoder, pair data and semantic
filtering (Semantica, Kumar, Houlsby & Hoogeboom, arXiv 2405.14857).

The denoiser is diff-pixel's backbone, conditioned on the tokens of a frozen image encoder
through its token cross-attention (``Cond(tokens, token_lengths, drop)``, learned null token)
and trained with diff-pixel's trainer on pairs of images from the same group ("page");
guidance is diff-core's ``guided`` and sampling diff-core's driver.
"""

from diff_semantica.data import (
    PHOTO_GROUPS,
    SHAPE_NAMES,
    GroupedImages,
    digits_groups,
    folder_groups,
    load_dataset,
    photo_crops,
    shapes10,
)
from diff_semantica.encoders import (
    CallableEncoder,
    ConvEncoder,
    EmbeddingCache,
    FrozenEncoder,
    ImageEncoder,
    PCAEncoder,
    RandomProjectionEncoder,
    encoder_from_config,
    load_encoder,
    save_encoder,
    train_encoder,
)
from diff_semantica.evaluate import (
    check_classifier,
    evaluate_adaptation,
    seen_groups_heldout_images,
    subset_adaptation,
)
from diff_semantica.filtering import (
    FilterConfig,
    FilterReport,
    filter_pairs,
    pair_cosines,
    resolve_threshold,
)
from diff_semantica.metrics import (
    class_agreement,
    copy_distance,
    copy_rate,
    diversity,
    memorisation_rate,
    per_class_agreement,
    reference_pair_rmse,
    set_fd,
    subset_tv,
)
from diff_semantica.model import (
    SemanticaConfig,
    SemanticaDenoiser,
    backbone_preset,
    rebuild_denoiser,
    semantica_loss,
)
from diff_semantica.pairs import (
    KINDS,
    PairConfig,
    Pairs,
    load_pairs,
    pair_images,
    sample_pairs,
    save_pairs,
)
from diff_semantica.sampling import sample_variations
from diff_semantica.testing import copy_oracle_denoiser, oracle_extra, pair_oracle_denoiser
from diff_semantica.train import PairLoader, RunConfig, build_pairs, load_run, train_semantica

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "PHOTO_GROUPS",
    "SHAPE_NAMES",
    "CallableEncoder",
    "ConvEncoder",
    "EmbeddingCache",
    "FilterConfig",
    "FilterReport",
    "FrozenEncoder",
    "GroupedImages",
    "ImageEncoder",
    "PCAEncoder",
    "PairConfig",
    "PairLoader",
    "Pairs",
    "RandomProjectionEncoder",
    "RunConfig",
    "SemanticaConfig",
    "SemanticaDenoiser",
    "__version__",
    "backbone_preset",
    "build_pairs",
    "check_classifier",
    "class_agreement",
    "copy_distance",
    "copy_oracle_denoiser",
    "copy_rate",
    "digits_groups",
    "diversity",
    "encoder_from_config",
    "evaluate_adaptation",
    "filter_pairs",
    "folder_groups",
    "load_dataset",
    "load_encoder",
    "load_pairs",
    "load_run",
    "memorisation_rate",
    "oracle_extra",
    "pair_cosines",
    "pair_images",
    "pair_oracle_denoiser",
    "per_class_agreement",
    "photo_crops",
    "rebuild_denoiser",
    "reference_pair_rmse",
    "resolve_threshold",
    "sample_pairs",
    "sample_variations",
    "save_encoder",
    "save_pairs",
    "seen_groups_heldout_images",
    "semantica_loss",
    "set_fd",
    "shapes10",
    "subset_adaptation",
    "subset_tv",
    "train_encoder",
    "train_semantica",
]
