"""Speaker boxes: InfiniteTalk's default when a two-speaker request gives none."""

from __future__ import annotations

DEFAULT_FACE_MARGIN = 0.05
"""Default boxes (left/right halves) are shrunk by this share of the side, as upstream does."""


def default_boxes(width: float, height: float) -> list[list[float]]:
    """Left and right halves as ``[x0, y0, x1, y1]``, shrunk by `DEFAULT_FACE_MARGIN`."""
    half = width / 2
    top, bottom = height * DEFAULT_FACE_MARGIN, height * (1 - DEFAULT_FACE_MARGIN)
    return [
        [half * DEFAULT_FACE_MARGIN, top, half * (1 - DEFAULT_FACE_MARGIN), bottom],
        [half + half * DEFAULT_FACE_MARGIN, top, half + half * (1 - DEFAULT_FACE_MARGIN), bottom],
    ]
