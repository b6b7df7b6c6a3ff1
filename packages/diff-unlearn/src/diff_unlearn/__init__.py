"""diff-unlearn: unlearning for conditional diffusion models and the same-noise retention metric.

After Schioppa, Hoogeboom, Heek, *Model Integrity when Unlearning with T2I Diffusion Models*
(arXiv 2411.02068): unlearning methods on diff-pixel's trainer (this project's ``distill`` and
``grad_project``; the baselines ``remap``, SalUn, EraseDiff, ESD, negative gradient, retain
fine-tuning) and the retention (integrity) metric, which compares the original and the unlearned
model under the same noise.
"""

from diff_unlearn.data import (
    PromptTable,
    UnlearnData,
    UnlearnTask,
    digits_task,
    folder_task,
    prompt_task,
    read_prompt_file,
)
from diff_unlearn.evaluate import ResultsTable, digits_classifier, evaluate_methods
from diff_unlearn.losses import (
    LossSetup,
    forget_esd,
    forget_random_label,
    forget_remap,
    neg_grad,
    retain_data,
    retain_distill,
)
from diff_unlearn.methods import METHODS, UnlearnMethod, project, saliency_mask
from diff_unlearn.metrics import (
    DISTANCES,
    RetentionReport,
    cfd,
    forget_efficacy,
    one_minus_ssim,
    pixel_rmse,
    retain_alignment,
    retain_fd,
    retention,
    retention_from_samples,
)
from diff_unlearn.models import (
    PretrainConfig,
    build_conditional,
    copy_model,
    load_prompt_table,
    load_run,
    pretrain,
)
from diff_unlearn.sampling import SamplingSpec, fingerprint, same_noise_samples
from diff_unlearn.unlearn import UnlearnConfig, loss_setup, make_method, unlearn, unlearn_trainer

__version__ = "0.1.0"

__all__ = [
    "DISTANCES",
    "METHODS",
    "LossSetup",
    "PretrainConfig",
    "PromptTable",
    "ResultsTable",
    "RetentionReport",
    "SamplingSpec",
    "UnlearnConfig",
    "UnlearnData",
    "UnlearnMethod",
    "UnlearnTask",
    "__version__",
    "build_conditional",
    "cfd",
    "copy_model",
    "digits_classifier",
    "digits_task",
    "evaluate_methods",
    "fingerprint",
    "folder_task",
    "forget_efficacy",
    "forget_esd",
    "forget_random_label",
    "forget_remap",
    "load_run",
    "load_prompt_table",
    "loss_setup",
    "make_method",
    "neg_grad",
    "one_minus_ssim",
    "pixel_rmse",
    "pretrain",
    "project",
    "prompt_task",
    "read_prompt_file",
    "retain_alignment",
    "retain_data",
    "retain_distill",
    "retain_fd",
    "retention",
    "retention_from_samples",
    "same_noise_samples",
    "saliency_mask",
    "unlearn",
    "unlearn_trainer",
]
