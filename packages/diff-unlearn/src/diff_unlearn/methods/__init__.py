"""The unlearning methods, one module each, all :class:`UnlearnMethod` on diff-pixel's trainer.

``METHODS[name](setup, **hyperparameters)`` builds one by name.
"""

from diff_unlearn.methods.base import UnlearnMethod
from diff_unlearn.methods.distill import distill
from diff_unlearn.methods.erasediff import erasediff
from diff_unlearn.methods.esd import esd
from diff_unlearn.methods.grad_project import grad_project, project
from diff_unlearn.methods.neg_grad import neg_grad
from diff_unlearn.methods.remap import remap
from diff_unlearn.methods.retain_finetune import retain_finetune
from diff_unlearn.methods.salun import saliency_mask, salun

#: Every method by name (the CLI's ``--method`` choices), in report order.
METHODS = {
    "retain_finetune": retain_finetune,
    "neg_grad": neg_grad,
    "remap": remap,
    "salun": salun,
    "erasediff": erasediff,
    "esd": esd,
    "distill": distill,
    "grad_project": grad_project,
}

__all__ = [
    "METHODS",
    "UnlearnMethod",
    "distill",
    "erasediff",
    "esd",
    "grad_project",
    "neg_grad",
    "project",
    "remap",
    "retain_finetune",
    "salun",
    "saliency_mask",
]
