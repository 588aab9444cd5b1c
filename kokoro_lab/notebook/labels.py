"""Point labels that never overlap: each label takes the first free spot around its point, or
none (the point keeps its hover text).

The rule: a label is a box of estimated size (characters × an average glyph width) placed above,
below, right or left of its marker, then at its corners, on a plot area of known size in
pixels. It is kept only if it lies inside the plot area and overlaps no marker and no label
already placed. The points the caller names go first, then the most isolated ones: in a crowd,
someone goes without. Sizes are estimated for the *narrowest* plot the figure may be drawn at:
a wider plot spreads the points apart in pixels while the labels keep their size, so what does
not overlap there does not overlap wider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GLYPH_WIDTH = 0.6  # average glyph width over font size, generous for sans-serif
POSITIONS = ("top center", "bottom center", "middle right", "middle left", "top right",
             "top left", "bottom right", "bottom left")


@dataclass(frozen=True)
class Box:
    left: float
    bottom: float
    right: float
    top: float

    def overlaps(self, other: Box) -> bool:
        return (self.left < other.right and other.left < self.right
                and self.bottom < other.top and other.bottom < self.top)

    def inside(self, width: float, height: float) -> bool:
        return self.left >= 0 and self.bottom >= 0 and self.right <= width and self.top <= height


def label_box(x: float, y: float, text: str, position: str, font_size: float,
              marker_size: float) -> Box:
    """The box (pixels, y up) a label takes at ``position`` around a marker at (x, y)."""
    if position not in POSITIONS:
        raise ValueError(f"unknown label position {position!r}; choose from {POSITIONS}")
    width = GLYPH_WIDTH * font_size * len(text)
    height = 1.25 * font_size
    gap = marker_size / 2 + 1
    vertical, horizontal = position.split()
    bottom = {"top": y + gap, "middle": y - height / 2, "bottom": y - gap - height}[vertical]
    left = {"center": x - width / 2, "right": x + gap, "left": x - gap - width}[horizontal]
    return Box(left, bottom, left + width, bottom + height)


def to_pixels(points: Sequence[tuple[float, float]], x_range: tuple[float, float],
              y_range: tuple[float, float], width_px: float, height_px: float
              ) -> list[tuple[float, float]]:
    (x0, x1), (y0, y1) = x_range, y_range
    return [((x - x0) / (x1 - x0) * width_px, (y - y0) / (y1 - y0) * height_px)
            for x, y in points]


def isolated_first(pixels: Sequence[tuple[float, float]]) -> list[int]:
    """Point indices, the one farthest from its nearest neighbour first (it has the most room
    for a label; a point in a crowd is the one to go without)."""
    def nearest(i: int) -> float:
        xi, yi = pixels[i]
        return min(((xi - x) ** 2 + (yi - y) ** 2 for j, (x, y) in enumerate(pixels) if j != i),
                   default=float("inf"))

    return sorted(range(len(pixels)), key=lambda i: -nearest(i))


def place_labels(points: Sequence[tuple[float, float]], texts: Sequence[str], *,
                 x_range: tuple[float, float], y_range: tuple[float, float],
                 width_px: float, height_px: float, font_size: float = 10,
                 marker_size: float = 11, first: Sequence[int] = ()) -> list[str | None]:
    """A plotly ``textposition`` per point, or None where no free spot was found. Points
    listed in ``first`` (indices) are labelled before the rest, in that order; the rest go
    most isolated first."""
    pixels = to_pixels(points, x_range, y_range, width_px, height_px)
    half = marker_size / 2
    taken = [Box(px - half, py - half, px + half, py + half) for px, py in pixels]
    chosen: list[str | None] = [None] * len(pixels)
    order = list(first) + [i for i in isolated_first(pixels) if i not in set(first)]
    for i in order:
        for position in POSITIONS:
            box = label_box(*pixels[i], texts[i], position, font_size, marker_size)
            if box.inside(width_px, height_px) and not any(box.overlaps(t) for t in taken):
                chosen[i] = position
                taken.append(box)
                break
    return chosen


__all__ = ["Box", "isolated_first", "label_box", "place_labels", "to_pixels"]
