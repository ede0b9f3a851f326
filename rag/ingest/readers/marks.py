"""A page as it is shown, and the quote's marks drawn over it: shared by every reader whose pages are pictures
(a PDF page rendered by PDFium, a scanned image).

Boxes are kept in page space: (left, bottom, right, top) in page units, y upwards, as PDF draws them. A page is
shown turned by its clockwise rotation and scaled to the image; `to_pixels` and `from_pixels` go between the two.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageGeometry:
    """How a page is shown: its visible box in page space and its clockwise rotation."""

    box: tuple[float, float, float, float]
    """(left, bottom, right, top) of the visible page: for a PDF, MediaBox ∩ CropBox; for an image, its pixels."""
    rotation: int = 0

    @property
    def shown_size(self) -> tuple[float, float]:
        """Width and height of the page as shown (turned by its rotation), in page units."""
        left, bottom, right, top = self.box
        width, height = right - left, top - bottom
        return (height, width) if self.rotation in (90, 270) else (width, height)


def to_pixels(box, geometry: PageGeometry, image_size) -> tuple[float, float, float, float]:
    """A page-space rectangle (left, bottom, right, top) as (x0, y0, x1, y1) pixels from the top-left corner of
    the page rendered at `image_size`: moved by the visible box's origin, turned by the page's rotation, scaled."""
    left, bottom, right, top = geometry.box
    x0, y0, x1, y1 = box
    across, down = {  # distances from the shown page's left and top edges, in page units
        0: ((x0 - left, x1 - left), (top - y1, top - y0)),
        90: ((y0 - bottom, y1 - bottom), (x0 - left, x1 - left)),
        180: ((right - x1, right - x0), (y0 - bottom, y1 - bottom)),
        270: ((top - y1, top - y0), (right - x1, right - x0)),
    }[geometry.rotation]
    width, height = geometry.shown_size
    sx, sy = image_size[0] / max(width, 1e-6), image_size[1] / max(height, 1e-6)
    return (across[0] * sx, down[0] * sy, across[1] * sx, down[1] * sy)


def from_pixels(pixels, geometry: PageGeometry, image_size) -> tuple[float, float, float, float]:
    """The page-space rectangle (left, bottom, right, top) under pixels (x0, y0, x1, y1) of the page rendered at
    `image_size`: `to_pixels` undone."""
    left, bottom, right, top = geometry.box
    width, height = geometry.shown_size
    sx, sy = image_size[0] / max(width, 1e-6), image_size[1] / max(height, 1e-6)
    a0, a1 = pixels[0] / sx, pixels[2] / sx  # across from the shown page's left edge, in page units
    d0, d1 = pixels[1] / sy, pixels[3] / sy  # down from its top edge
    xs, ys = {
        0: ((left + a0, left + a1), (top - d1, top - d0)),
        90: ((left + d0, left + d1), (bottom + a0, bottom + a1)),
        180: ((right - a1, right - a0), (bottom + d0, bottom + d1)),
        270: ((right - d1, right - d0), (top - a1, top - a0)),
    }[geometry.rotation]
    return (min(xs), min(ys), max(xs), max(ys))


def line_rectangles(boxes) -> list[tuple[float, float, float, float]]:
    """Character boxes (x0, y0, x1, y1) merged into one rectangle per run on a line, in reading order. A run goes
    along either axis (a page turned by a quarter shows its lines upright, or sideways): the next box joins it when
    it lies in the run's band and less than 1.2 band widths from its end."""
    rectangles: list[list[float]] = []
    for x0, y0, x1, y1 in boxes:
        last = rectangles[-1] if rectangles else None
        if last and (_joins(last, (x0, y0, x1, y1), 0) or _joins(last, (x0, y0, x1, y1), 1)):
            last[0], last[1], last[2], last[3] = min(last[0], x0), min(last[1], y0), max(last[2], x1), max(last[3], y1)
        else:
            rectangles.append([x0, y0, x1, y1])
    return [tuple(r) for r in rectangles]


def _joins(run, box, axis: int) -> bool:
    """Whether `box` continues `run` along `axis` (0: x, 1: y): the same band across, a small gap along."""
    across = 1 - axis
    thickness = box[across + 2] - box[across]
    if abs(box[across] - run[across]) >= 0.5 * thickness:
        return False
    gap = max(box[axis] - run[axis + 2], run[axis] - box[axis + 2])
    return gap < 1.2 * thickness


def highlight_rectangles(boxes, geometry: PageGeometry, image_size) -> list[tuple[float, float, float, float]]:
    """The rectangles `draw_marks` draws for character `boxes`: one per run on a line, in image pixels."""
    return line_rectangles([to_pixels(box, geometry, image_size) for box in boxes])


def draw_marks(image, boxes, geometry: PageGeometry) -> bytes:
    """PNG of the shown page `image` (a PIL image) with the characters' `boxes` (page space) marked in yellow."""
    import io

    from PIL import Image, ImageDraw

    image = image.convert("RGB")
    if boxes:
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for rectangle in highlight_rectangles(boxes, geometry, image.size):
            draw.rectangle(rectangle, fill=(255, 214, 0, 110), outline=(230, 140, 0, 255), width=1)
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
