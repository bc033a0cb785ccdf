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
