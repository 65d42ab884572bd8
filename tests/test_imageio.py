import numpy as np
import pytest
from PIL import Image

from uare.imageio import ImageError, load_image, read_jsonl, append_jsonl, save_image


def test_grey_rgba_and_16bit_become_rgb(tmp_path):
    Image.fromarray(np.full((8, 9), 100, np.uint8), "L").save(tmp_path / "g.png")
    rgba = np.zeros((8, 9, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent -> composited on white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 9), 65535, np.uint16)).save(tmp_path / "w16.png")
    g = np.asarray(load_image(tmp_path / "g.png"))
    a = np.asarray(load_image(tmp_path / "a.png"))
    w = np.asarray(load_image(tmp_path / "w16.png"))
    assert g.shape == a.shape == w.shape == (8, 9, 3)
    assert (g == 100).all() and (a == 255).all() and (w == 255).all()


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    for name, reason in [("empty.png", "empty"), ("junk.png", "cannot read"), ("nope.png", "no such")]:
        with pytest.raises(ImageError, match=reason) as e:
            load_image(tmp_path / name)
        assert name in str(e.value)


def test_huge_header_is_refused_before_decoding(tmp_path):
    Image.new("L", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="over the limit"):
        load_image(tmp_path / "big.png", max_pixels=1000)


def test_save_is_atomic_and_never_overwrites_inputs(tmp_path):
    src = tmp_path / "in.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(src)
    with pytest.raises(ImageError, match="overwrite"):
        save_image(Image.new("RGB", (4, 4)), src, protect=[src])
    assert np.asarray(load_image(src))[0, 0].tolist() == [1, 2, 3]
    out = save_image(Image.new("RGB", (4, 4)), tmp_path / "o" / "x.png")
    assert out.exists() and not list(out.parent.glob("*.tmp"))


def test_jsonl_survives_a_torn_last_line(tmp_path):
    p = tmp_path / "m.jsonl"
    append_jsonl(p, {"a": 1})
    with open(p, "a") as f:
        f.write('{"b": ')
    assert read_jsonl(p) == [{"a": 1}]
