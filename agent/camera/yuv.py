"""YUV420 (I420) buffers as picamera2 returns them -> BGR, with the colour space libcamera configured.

picamera2 hands a YUV420 stream over as a `(height * 3 / 2, stride)` uint8 array with the row padding kept
(`request.py` `make_array`). The Y plane is `height` rows of `stride` bytes; the U and then the V plane follow,
each `height / 2` rows of `stride / 2` bytes, so one array row of the chroma part holds two chroma rows, padding
included. The stride is the width rounded up to the ISP's alignment: 64 bytes on a Pi 4 (bcm2835-isp), 128 on a
Pi 5 (PiSP), so a 320-wide stream is 384 bytes wide on a Pi 5. The planes must be cut from the whole padded buffer
and only then cropped to the width; cropping the array first misplaces every chroma row.

The matrix and range come from the configured colour space: picamera2's video configurations use Rec709 (limited
range) from 1280x720 up and SMPTE170M (BT.601, limited) below; sYCC (BT.601, full range) for stills.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np


class YuvEncoding(NamedTuple):
    """A Y'CbCr matrix by its luma coefficients (ITU-R), and whether the range is full (0-255) or limited (16-235)."""

    name: str
    kr: float
    kb: float
    full_range: bool


BT601 = YuvEncoding("BT.601", 0.299, 0.114, False)
BT709 = YuvEncoding("BT.709", 0.2126, 0.0722, False)
BT2020 = YuvEncoding("BT.2020", 0.2627, 0.0593, False)
_MATRICES = {"Rec601": BT601, "Rec709": BT709, "Rec2020": BT2020}


def encoding_from_names(ycbcr_encoding: str, range_name: str) -> YuvEncoding | None:
    """The encoding named by libcamera's `ColorSpace.YcbcrEncoding` and `ColorSpace.Range` (e.g. "Rec709", "Limited").

    None when the matrix is not a YCbCr one libcamera defines (e.g. "Null" on an RGB stream).
    """
    matrix = _MATRICES.get(ycbcr_encoding)
    if matrix is None:
        return None
    return matrix._replace(full_range=range_name == "Full")


def yuv_to_bgr_matrix(encoding: YuvEncoding) -> np.ndarray:
    """The 3x4 affine matrix mapping (Y, U, V, 1) in 0-255 code values to (B, G, R)."""
    kr, kb = encoding.kr, encoding.kb
    kg = 1.0 - kr - kb
    if encoding.full_range:
        y_gain, c_gain, y_offset = 1.0, 1.0, 0.0
    else:
        y_gain, c_gain, y_offset = 255.0 / 219.0, 255.0 / 224.0, 16.0
    # R = Y + 2(1-kr) Cr; B = Y + 2(1-kb) Cb; G = (Y - kr R - kb B) / kg, with Cb, Cr centred on 128.
    cb_to_b, cr_to_r = 2.0 * (1.0 - kb) * c_gain, 2.0 * (1.0 - kr) * c_gain
    cb_to_g, cr_to_g = -kb * cb_to_b / kg, -kr * cr_to_r / kg
    rows = [(y_gain, cb_to_b, 0.0), (y_gain, cb_to_g, cr_to_g), (y_gain, 0.0, cr_to_r)]
    return np.array([(gy, gu, gv, -gy * y_offset - 128.0 * (gu + gv)) for gy, gu, gv in rows], np.float32)


def bgr_from_yuv420(array: np.ndarray, size: tuple[int, int], encoding: YuvEncoding) -> np.ndarray:
    """A padded YUV420 (I420) buffer of shape `(h * 3 / 2, stride)` -> BGR uint8 of `size` (w, h)."""
    width, height = size
    if array.ndim != 2 or array.dtype != np.uint8 or array.shape[0] != height * 3 // 2 or array.shape[1] < width or width % 2 or height % 2:
        raise ValueError(f"not a {width}x{height} YUV420 buffer: {array.shape} {array.dtype}")
    stride = array.shape[1]
    flat = np.ascontiguousarray(array).reshape(-1)
    chroma_stride, chroma_rows = stride // 2, height // 2
    u_start = stride * height
    v_start = u_start + chroma_stride * chroma_rows
    y = flat[:u_start].reshape(height, stride)[:, :width]
    u = flat[u_start:v_start].reshape(chroma_rows, chroma_stride)[:, : width // 2]
    v = flat[v_start : v_start + chroma_stride * chroma_rows].reshape(chroma_rows, chroma_stride)[:, : width // 2]
    # Each chroma sample covers 2x2 pixels, as in OpenCV's own I420 conversion.
    u_full = cv2.resize(u, (width, height), interpolation=cv2.INTER_NEAREST)
    v_full = cv2.resize(v, (width, height), interpolation=cv2.INTER_NEAREST)
    return cv2.transform(cv2.merge([y, u_full, v_full]), yuv_to_bgr_matrix(encoding))
