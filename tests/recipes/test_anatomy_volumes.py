"""Reading real images: Siemens mosaics, axial axis last, geometry."""

from __future__ import annotations

import numpy as np
import pytest

from anatomy_volumes import mosaic_affine, slices_last, unpack_mosaic


def test_mosaic_tiles_become_slices_in_order():
    rows, cols, count = 4, 5, 7  # 3 x 3 grid, the last two tiles empty
    mosaic = np.zeros((3 * rows, 3 * cols))
    for k in range(count):
        r, c = divmod(k, 3)
        mosaic[r * rows : (r + 1) * rows, c * cols : (c + 1) * cols] = k + 1
        mosaic[r * rows, c * cols + 1] = 100 + k  # marks (row 0, column 1) of tile k
    volume = unpack_mosaic(mosaic, count)
    assert volume.shape == (cols, rows, count)  # (I = column, J = row, K = slice)
    for k in range(count):
        assert volume[1, 0, k] == 100 + k and volume[2, 2, k] == k + 1


def test_mosaic_affine_moves_the_origin_to_the_first_tile():
    affine = mosaic_affine([1, 0, 0, 0, 1, 0], [-100.0, -90.0, 10.0], [2.0, 1.5], 3.0, (300, 320), (100, 80))
    # LPS origin shifted by half the size difference: x by 1.5 * (320 - 80) / 2, y by 2.0 * (300 - 100) / 2
    lps_origin = np.array([-100.0 + 180.0, -90.0 + 200.0, 10.0])
    np.testing.assert_allclose(affine[:3, 3], lps_origin * [-1, -1, 1])  # RAS
    np.testing.assert_allclose(np.abs(np.diag(affine)[:3]), [1.5, 2.0, 3.0])


def test_slices_go_to_the_last_axis_with_the_affine():
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    affine = np.eye(4)
    affine[:3, :3] = [[0, 0, 1.0], [1.0, 0, 0], [0, 2.0, 0]]  # axis 1 points superior: it is axial
    out, out_affine = slices_last(array, affine)
    assert out.shape == (2, 4, 3)
    index = np.array([1, 2, 0, 1.0])  # (i, k, j) in the output
    np.testing.assert_allclose(out_affine @ index, affine @ np.array([1, 0, 2, 1.0]))
    assert out[1, 2, 0] == array[1, 0, 2]
    same, same_affine = slices_last(array, np.diag([1.0, 1.0, 3.0, 1.0]))
    assert same is array and same_affine[2, 2] == pytest.approx(3.0)


def _svg_with_slices(slices: list[np.ndarray], path, colour: bool = False) -> None:
    """An SVG like MRIQC's report mosaics: each slice an embedded grey PNG (rows top-down)."""
    import base64
    import io

    from PIL import Image

    parts = []
    for k, grey in enumerate(slices):
        rgb = np.repeat(grey[:, :, None], 3, axis=2).astype(np.uint8)
        if colour:
            rgb[..., 0] = 255 - rgb[..., 0]
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG")
        encoded = base64.b64encode(buffer.getvalue()).decode()
        parts.append(f'<image id="i{k}" transform="matrix(1 0 0 -1 0 0)" width="{grey.shape[1]}" '
                     f'height="{grey.shape[0]}" xlink:href="data:image/png;base64,\n{encoded}"/>')
    path.write_text('<svg xmlns:xlink="http://www.w3.org/1999/xlink">' + "\n".join(parts) + "</svg>")


def test_report_mosaic_slices_become_a_padded_volume_in_order(tmp_path):
    from anatomy_volumes import read_report_mosaic

    rng = np.random.default_rng(0)
    axial = [rng.integers(0, 256, (12, 9)) for _ in range(5)]  # (rows, columns)
    other = [rng.integers(0, 256, (7, 12))]  # a slice of another orientation, drawn after the axial ones
    _svg_with_slices(axial + other, tmp_path / "mosaic.svg")
    volume, affine = read_report_mosaic(tmp_path / "mosaic.svg", pixel_mm=1.0, margin=3)
    assert volume.shape == (9 + 6, 12 + 6, 5) and volume.dtype == np.float32
    for k, grey in enumerate(axial):  # I = column, J = row counted from the bottom
        np.testing.assert_array_equal(volume[3:-3, 3:-3, k], grey[::-1, :].T)
    assert volume[:3].max() == 0 and volume[:, -3:].max() == 0  # air around the cropped head
    np.testing.assert_allclose(affine @ [3, 3, 0, 1], [0, 0, 0, 1])  # the first cropped voxel at the origin
    _svg_with_slices(axial, tmp_path / "colour.svg", colour=True)
    with pytest.raises(ValueError, match="grey"):
        read_report_mosaic(tmp_path / "colour.svg")
