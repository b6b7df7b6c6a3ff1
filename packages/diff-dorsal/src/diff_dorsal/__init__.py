"""diff-dorsal: object-slot- and camera-conditioned multi-view diffusion with object editing
(DORSal, Jabri, van Steenkiste, Hoogeboom, Sajjadi & Kipf, arXiv 2306.08068).

Stage 1 trains a slot encoder (SRT-style encoder + slot attention, OSRT arXiv 2206.06922) with
the OSRT-lite slot-mixer decoder on procedural multi-object scenes and freezes it; stage 2 trains
a multi-view diffusion decoder on diff-pixel's frame-axis U-ViT conditioned on the slots
(cross-attention tokens) and on each target view's camera (ray-feature maps), with attention
across views. Objects are edited by removing or transferring slots with the noise held fixed.

Submodules not re-exported here: ``diff_dorsal.testing`` (the exact renderer denoiser and the
public checks), ``diff_dorsal.viz`` (pictures; imports matplotlib / Pillow when called),
``diff_dorsal.demo`` (the pipeline behind the CLI) and ``diff_dorsal.cli``.
"""

from diff_dorsal.cameras import (
    CameraConfig,
    Cameras,
    canonicalize,
    circle_path,
    project,
    rays,
    sample_cameras,
)
from diff_dorsal.denoiser import (
    DECODER_PRESETS,
    DecoderConfig,
    DorsalDenoiser,
    build_denoiser,
    compact_slots,
    null_slot_cond,
)
from diff_dorsal.editing import (
    edit_iou,
    edit_locality,
    edit_maps,
    locality_ratio,
    match_slots,
    random_other_slots,
    remove_slots,
    segmentation_from_edits,
    transfer_slots,
)
from diff_dorsal.encoder import (
    ENCODER_PRESETS,
    EncoderConfig,
    ObjectSlots,
    SlotAttention,
    SlotEncoder,
    SRTEncoder,
    object_slots,
)
from diff_dorsal.features import (
    FeatureNetConfig,
    SceneFeatureNet,
    feature_distance,
    frechet_feature_distance,
    load_feature_net,
    save_feature_net,
    train_feature_net,
)
from diff_dorsal.metrics import (
    empty_scene_baseline,
    fg_ari,
    mean_image_baseline,
    miou,
    nearest_view_baseline,
    psnr,
    sharpness_ratio,
    ssim,
)
from diff_dorsal.osrt import OSRTLite, SlotMixerDecoder
from diff_dorsal.rays import OSRT_MSN, RayEncoding, posenc, ray_features
from diff_dorsal.sampling import sample_path, sample_views
from diff_dorsal.scenes import (
    Render,
    Scene,
    SceneConfig,
    SceneDataset,
    load_scenes,
    remove_object,
    render,
    render_jax,
    sample_scene,
    save_scenes,
    transfer_objects,
)
from diff_dorsal.stage1 import Stage1Config, load_encoder, novel_view_psnr, train_encoder
from diff_dorsal.stage2 import Stage2Config, dorsal_loss, load_dorsal, train_dorsal

__version__ = "0.1.0"

__all__ = [
    "DECODER_PRESETS",
    "ENCODER_PRESETS",
    "OSRT_MSN",
    "CameraConfig",
    "Cameras",
    "DecoderConfig",
    "DorsalDenoiser",
    "EncoderConfig",
    "FeatureNetConfig",
    "OSRTLite",
    "ObjectSlots",
    "RayEncoding",
    "Render",
    "SRTEncoder",
    "Scene",
    "SceneConfig",
    "SceneDataset",
    "SceneFeatureNet",
    "SlotAttention",
    "SlotEncoder",
    "SlotMixerDecoder",
    "Stage1Config",
    "Stage2Config",
    "__version__",
    "build_denoiser",
    "canonicalize",
    "circle_path",
    "compact_slots",
    "dorsal_loss",
    "edit_iou",
    "edit_locality",
    "edit_maps",
    "empty_scene_baseline",
    "feature_distance",
    "fg_ari",
    "frechet_feature_distance",
    "load_dorsal",
    "load_encoder",
    "load_feature_net",
    "load_scenes",
    "locality_ratio",
    "match_slots",
    "mean_image_baseline",
    "miou",
    "nearest_view_baseline",
    "novel_view_psnr",
    "null_slot_cond",
    "object_slots",
    "posenc",
    "project",
    "psnr",
    "random_other_slots",
    "ray_features",
    "rays",
    "remove_object",
    "remove_slots",
    "render",
    "render_jax",
    "sample_cameras",
    "sample_path",
    "sample_scene",
    "sample_views",
    "save_feature_net",
    "save_scenes",
    "segmentation_from_edits",
    "sharpness_ratio",
    "ssim",
    "train_dorsal",
    "train_encoder",
    "train_feature_net",
    "transfer_objects",
    "transfer_slots",
]
