"""batchlabel.infer.images: orientation, mode conversion and one-line reasons for bad files (real files, Pillow)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchlabel.infer.images import ImageLoadError, file_sha256, load_image, load_image_bytes


def test_good_and_bad_files_of_the_zoo(image_zoo) -> None:
    for name, size in image_zoo.good.items():
        loaded = load_image(image_zoo.root / name)
        assert loaded.original_size == size, name
        assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (*size, 3)
        assert not loaded.rgb.flags.writeable
        assert loaded.sha256 == file_sha256(image_zoo.root / name)
    for name, fragment in image_zoo.bad.items():
        with pytest.raises(ImageLoadError) as info:
            load_image(image_zoo.root / name)
        assert fragment in info.value.reason, (name, info.value.reason)
        assert "\n" not in str(info.value) and str(info.value).startswith(str(image_zoo.root / name))


def test_exif_orientation_is_applied_and_recorded(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:5, :5] = (255, 0, 0)  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "r.png", exif=exif)
    loaded = load_image(tmp_path / "r.png")
    assert loaded.exif_orientation == 6
    assert loaded.original_size == (40, 20)
    # orientation 6 displays the image rotated 90 degrees clockwise: stored top-left -> displayed top-right
    assert tuple(loaded.rgb[1, -2]) == (255, 0, 0) and tuple(loaded.rgb[1, 1]) == (0, 0, 0)
    assert load_image(tmp_path / "r.png").exif_orientation == 6
    Image.fromarray(stored).save(tmp_path / "plain.png")
    assert load_image(tmp_path / "plain.png").exif_orientation == 1


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 100, 65535, 40000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as image:
        assert image.mode.startswith("I")
    rgb = load_image(tmp_path / "g16.png").rgb
    assert rgb[0, :, 0].tolist() == [0, 100, 255, round(40000 / 257)]
    assert (rgb[..., 0] == rgb[..., 2]).all()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("L", (128, 128, 128)),
        ("P", (200, 40, 10)),
        ("CMYK", (200, 40, 10)),
        ("RGBA", (200, 40, 10)),
        ("LA", (128, 128, 128)),
        ("1", (255, 255, 255)),
    ],
)
def test_modes_convert_to_rgb(tmp_path: Path, mode: str, expected: tuple[int, int, int]) -> None:
    source = Image.new("RGB", (7, 5), (200, 40, 10)) if mode not in ("L", "LA", "1") else Image.new("L", (7, 5), 128)
    if mode == "1":
        source = Image.new("L", (7, 5), 255)
    image = source.convert(mode, palette=Image.Palette.ADAPTIVE) if mode == "P" else source.convert(mode)
    suffix = ".tiff" if mode == "CMYK" else ".png"
    image.save(tmp_path / f"x{suffix}")
    rgb = load_image(tmp_path / f"x{suffix}").rgb
    assert rgb.shape == (5, 7, 3)
    assert np.abs(rgb[2, 3].astype(int) - np.array(expected)).max() <= 2


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = load_image(tmp_path / "a.png").rgb
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[3, 3]) == (255, 255, 255)


def test_decompression_bomb_limit_is_per_call(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png", max_pixels=10_000).original_size == (100, 100)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(tmp_path / "big.png", max_pixels=9_999)
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 10_000  # the global is restored


def test_bytes_missing_file_and_hash(tmp_path: Path) -> None:
    Image.new("RGB", (3, 2), (1, 2, 3)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    loaded = load_image_bytes(data, name="upload/t.png")
    assert loaded.path == Path("upload/t.png") and loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert file_sha256(tmp_path / "t.png") == loaded.sha256
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageLoadError, match="empty file"):
        load_image_bytes(b"", name="e.jpg")
