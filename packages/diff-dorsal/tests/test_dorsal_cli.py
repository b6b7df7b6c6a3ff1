"""Check 14 of the diff-dorsal spec: ``diff-dorsal demo --quick`` writes decodable pictures and
its metrics, and every row of §8's bad-input table gives its message (through the command line
where the row is a command-line input, else through the function that raises it).

The demo (slow tier, like every package's ``demo --quick`` test: 55 s of it are compilations)
runs in-process (``main()``). The command-line error tests use run folders of the demo's quick
configurations holding their untrained step-0 checkpoints, written by the real training
functions before any step (nothing is compiled).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from diff_dorsal.cli import build_parser, main
from diff_pixel.train import Hook


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dorsal-demo")
    assert main(["demo", "--quick", "--out", str(out), "--overwrite"]) == 0
    return out


class _CheckpointFirst(Hook):
    """Writes the run's step-0 checkpoint before the first step (with ``steps=0``, the only one)."""

    def on_start(self, trainer) -> None:
        trainer.save_checkpoint()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """``data.npz`` (16 scenes), ``stage1/`` and ``stage2/`` (with ``run.json``) laid out as the
    demo lays them out, from its ``--quick`` configurations, untrained."""
    from diff_dorsal.demo import RUN_FILE, make_data, quick_configs
    from diff_dorsal.stage1 import train_encoder
    from diff_dorsal.stage2 import train_dorsal
    from diff_protocol.io import atomic_write

    out = tmp_path_factory.mktemp("dorsal-runs")
    cfg = quick_configs(True)
    arrays = make_data(out / "data.npz", scenes=cfg["scenes"], progress=False)
    first = [_CheckpointFirst()]
    train_encoder(arrays, cfg["stage1"], out / "stage1", steps=0, progress=False, hooks=first)
    train_dorsal(
        arrays,
        cfg["stage2"],
        out / "stage2",
        encoder=out / "stage1",
        steps=0,
        progress=False,
        hooks=first,
    )
    run = {"data": str(out / "data.npz"), "encoder": str(out / "stage1")}
    atomic_write(out / "stage2" / RUN_FILE, json.dumps(run))
    return out


def _decoded(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        frames = getattr(im, "n_frames", 1)
        return im.size, frames


@pytest.mark.slow
@pytest.mark.demo
def test_demo_quick_writes_pictures_and_metrics(demo_out: Path) -> None:
    for name in (
        "samples.png",
        "edit_remove.png",
        "data_preview.png",
        "stage1/loss.png",
        "stage2/loss.png",
    ):
        size, _ = _decoded(demo_out / name)
        assert min(size) >= 32, name
    for folder in ("stage1/recon", "stage1/segmentation", "stage2/samples"):
        pngs = sorted((demo_out / folder).glob("step_*.png"))
        assert pngs, folder
        _decoded(pngs[-1])
    size, frames = _decoded(demo_out / "orbit.gif")
    assert frames == 12 and size[0] > size[1]  # truth | DORSal side by side

    data = json.loads((demo_out / "metrics.json").read_text())
    assert {"meta", "glossary", "models", "edits"} <= set(data)
    assert data["meta"]["expected_s"] == 40
    models = data["models"]
    assert set(models) == {
        "DORSal",
        "OSRT-lite",
        "mean image",
        "nearest input view",
        "empty-scene render",
    }
    for name, row in models.items():
        for k in (
            "psnr",
            "ssim",
            "feature_distance",
            "frechet_feature_distance",
            "sharpness_ratio",
        ):
            assert math.isfinite(row[k]), (name, k)
            assert k in data["glossary"]
    # the empty-scene render is exact on every background pixel: it beats the mean image
    assert models["empty-scene render"]["psnr"] > models["mean image"]["psnr"]
    assert 0.0 <= data["edits"]["edit_locality"] <= 1.0
    md = (demo_out / "metrics.md").read_text()
    assert "| DORSal |" in md and "edit_locality" in md


def test_help_shows_defaults(capsys) -> None:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    text = sub["data"].format_help()
    assert "(default: 10000)" in text and "(default: 32)" in text
    text = sub["train"].format_help()
    assert "(default: 0.1)" in text and "(default: 800)" in text


def _error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()[-1]) > 0
    return err


@pytest.mark.smoke
def test_views_row(tmp_path, capsys) -> None:
    err = _error(capsys, ["data", "--views", "4", "--out", str(tmp_path / "f.npz")])
    assert "argument --views: must be >= input_views + target_views (10), got 4" in err
    assert not (tmp_path / "f.npz").exists()


def test_existing_outputs_are_refused(tmp_path, runs: Path, capsys) -> None:
    (tmp_path / "f.npz").write_bytes(b"x")
    err = _error(capsys, ["data", "--scenes", "2", "--out", str(tmp_path / "f.npz")])
    assert "exists (pass --overwrite to replace it)" in err
    assert (tmp_path / "f.npz").read_bytes() == b"x"
    junk = tmp_path / "run"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    err = _error(
        capsys,
        ["train-encoder", "--data", str(runs / "data.npz"), "--workdir", str(junk)],
    )
    assert "holds no checkpoints (pass --overwrite to replace it)" in err
    assert (junk / "notes.txt").read_text() == "mine"
    err = _error(capsys, ["demo", "--quick", "--out", str(runs)])
    assert "exists and is not empty (pass --overwrite)" in err


def test_guidance_row(runs: Path, tmp_path, capsys) -> None:
    from diff_dorsal.demo import load_run
    from diff_dorsal.sampling import sample_views

    err = _error(
        capsys,
        [
            "sample",
            "--workdir",
            str(runs / "stage2"),
            "--guidance",
            "-1",
            "--out",
            str(tmp_path / "s.npz"),
        ],
    )
    assert "sample_views: guidance must be >= 0, got -1.0" in err
    run = load_run(runs / "stage2")
    z = np.zeros((1, 5, 32, 32, 3), np.float32)
    with pytest.raises(ValueError, match=r"sample_views: guidance must be >= 0, got -1\.0"):
        sample_views(
            run.denoiser, np.zeros((1, 6, 32)), np.ones((1, 6), bool), z, z, 0, guidance=-1.0
        )


def test_render_drop_row(runs: Path, tmp_path, capsys) -> None:
    from diff_dorsal.cameras import CameraConfig, sample_cameras
    from diff_dorsal.scenes import SceneConfig, render, sample_scene

    rng = np.random.default_rng(0)
    scene = sample_scene(rng, SceneConfig(min_objects=3, max_objects=3))
    cams = sample_cameras(rng, CameraConfig(n_views=1))
    with pytest.raises(ValueError, match=r"render: drop must name objects 0\.\.2, got 7"):
        render(scene, cams, drop=(7,))
    # through the command line: the same message for an object the test scene lacks
    from diff_dorsal.demo import held_out_scenes
    from diff_dorsal.scenes import load_scenes

    test = held_out_scenes(load_scenes(runs / "data.npz"), 4)
    i = int(np.argmin(test["n_objects"]))
    k = int(test["n_objects"][i])
    argv = ["edit", "--workdir", str(runs / "stage2"), "--scene", str(i)]
    err = _error(capsys, [*argv, "--remove-object", "7", "--out", str(tmp_path / "e.png")])
    assert f"render: drop must name objects 0..{k - 1}, got 7" in err
    assert not (tmp_path / "e.png").exists()


def test_transfer_overlap_row() -> None:
    from diff_dorsal.scenes import Scene, transfer_objects

    def scene(centres):
        k = len(centres)
        return Scene(
            np.zeros(k, np.int32),
            np.array([[x, y, 0.4] for x, y in centres], np.float32),
            np.full(k, 0.4, np.float32),
            np.zeros(k, np.float32),
            np.full((k, 3), 0.5, np.float32),
        )

    a = scene([(-1.2, -1.2), (0.0, 0.0)])
    b = scene([(1.2, 1.2), (-1.2, 1.2), (0.1, 0.2)])
    with pytest.raises(
        ValueError, match=r"transfer_objects: objects 1 \(scene A\) and 2 \(scene B\) overlap"
    ):
        transfer_objects(a, b, [1, 2])
    assert transfer_objects(a, b, [0, 1]).n_objects == 4


def test_denoiser_rows() -> None:
    import jax.numpy as jnp

    from diff_dorsal.denoiser import DecoderConfig, build_denoiser

    cfg = DecoderConfig(token_dim=32, overrides=dict(channels=(32, 32), mid_blocks=1, head_dim=16))
    den = build_denoiser(cfg, 128, 0)
    z = jnp.zeros((2, 5, 32, 32, 3))
    rays = jnp.zeros((2, 5, 32, 32, 3))
    good = {"slots": jnp.zeros((2, 6, 128)), "slot_mask": jnp.ones((2, 6), bool)}
    with pytest.raises(
        ValueError, match=r"DorsalDenoiser: cond\['slots'\] last axis must be 128, got 96"
    ):
        den(
            z,
            jnp.zeros(2),
            {**good, "slots": jnp.zeros((2, 6, 96)), "origins": rays, "directions": rays},
        )
    short = jnp.zeros((2, 4, 32, 32, 3))
    with pytest.raises(
        ValueError,
        match=r"DorsalDenoiser: cond\['origins'\] shape \(2, 4, 32, 32, 3\) must be \(2, 5, 32, 32, 3\)",
    ):
        den(z, jnp.zeros(2), {**good, "origins": short, "directions": rays})


def test_encoder_preset_row(runs: Path, tmp_path, capsys) -> None:
    """The row's message through the command line: a stage-1 run of preset 'lite' (the demo's)
    given to a stage-2 configuration of preset 'msn', and the row's exact wording through
    train_dorsal with a (tiny) 'msn' encoder checkpoint."""
    argv = ["train", "--encoder", str(runs / "stage1"), "--data", str(runs / "data.npz")]
    err = _error(capsys, [*argv, "--preset", "msn", "--workdir", str(tmp_path / "d2")])
    assert (
        f"train: encoder checkpoint {runs / 'stage1'} has preset 'lite', config asks for 'msn'"
        in err
    )

    from flax import nnx

    from diff_dorsal.denoiser import DecoderConfig
    from diff_dorsal.encoder import EncoderConfig
    from diff_dorsal.osrt import OSRTLite
    from diff_dorsal.scenes import load_scenes
    from diff_dorsal.stage1 import RayBatchLoader, Stage1Config, ray_mse_loss
    from diff_dorsal.stage2 import Stage2Config, train_dorsal
    from diff_pixel.train import Trainer

    data = load_scenes(runs / "data.npz")
    tiny_msn = EncoderConfig(
        "msn",
        conv_channels=(4, 4, 4),
        dim=8,
        n_layers=1,
        heads=1,
        mlp_ratio=1,
        num_slots=2,
        slot_dim=4,
        slot_mlp_hidden=4,
        decoder_dim=4,
        decoder_layers=1,
        decoder_heads=1,
        decoder_hidden=(4,),
        pos_octaves=1,
        dir_octaves=1,
    )
    small = {k: data[k][:2, :, :8, :8] for k in ("images", "origins", "directions")}
    d1 = tmp_path / "D1"
    # a real stage-1 checkpoint, written by the stage-1 trainer before its first step (no
    # compilation: the refusal comes before any training)
    s1 = Stage1Config(encoder=tiny_msn, steps=1, batch_size=1, rays_per_scene=4, checkpoint_every=0)
    loader = RayBatchLoader(small, 1, input_views=5, target_views=5, rays_per_scene=4)
    model = OSRTLite(tiny_msn, rngs=nnx.Rngs(0))
    Trainer(model, ray_mse_loss, s1.train_config(d1, 1, False), loader).save_checkpoint()
    cfg = Stage2Config(decoder=DecoderConfig(image_size=32), slots="osrt", encoder_preset="lite")
    with pytest.raises(
        ValueError,
        match=rf"train: encoder checkpoint {d1} has preset 'msn', config asks for 'lite'",
    ):
        train_dorsal(data, cfg, tmp_path / "D2", encoder=d1, progress=False)


def test_pictures_are_exact_and_lazy(tmp_path) -> None:
    """view_grid tiles are the views themselves (nearest-neighbour upsampled, rounded to uint8),
    the GIF has one frame per view, and importing the picture and metric modules loads neither
    matplotlib nor Pillow."""
    import subprocess
    import sys

    from PIL import Image

    from diff_dorsal import viz

    rng = np.random.default_rng(0)
    views = rng.uniform(size=(3, 8, 8, 3)).astype(np.float32)
    viz.view_grid([views], tmp_path / "g.png", scale=2, pad=2)
    img = np.asarray(Image.open(tmp_path / "g.png").convert("RGB"))
    expect = np.round(views * 255).astype(np.uint8).repeat(2, 1).repeat(2, 2)
    for j in range(3):
        x0 = 2 + j * (16 + 2)
        np.testing.assert_array_equal(img[2:18, x0 : x0 + 16], expect[j])
    viz.path_gif({"a": views, "b": views[::-1]}, tmp_path / "p.gif")
    with Image.open(tmp_path / "p.gif") as im:
        assert im.n_frames == 3
    code = (
        "import sys, diff_dorsal, diff_dorsal.viz, diff_dorsal.metrics; "
        "assert 'matplotlib' not in sys.modules and 'PIL' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
