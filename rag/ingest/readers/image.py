"""Images of pages (PNG, JPEG, TIFF, multi-page TIFF included) read by OCR: one frame is one page.

A page's boxes are in its pixels (y upwards, like PDF's page space), so a citation shows the picture itself with
the quote marked; a photo's EXIF orientation is applied first, as every viewer does.
"""

from __future__ import annotations

import io

from rag.ingest.readers import TextRecord, Unreadable, report
from rag.ingest.readers.layout import assemble, page_furniture, reading_order
from rag.ingest.readers.marks import PageGeometry, draw_marks

KIND = "image"
NAME = "image (PNG, JPEG or TIFF)"
SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
READER_VERSION = 1
USES_OCR = True
MAX_PIXELS = 100_000_000
"""Pixels one page may have (a 600 dpi scan of an A3 page has 70 million); more is a decompression bomb."""
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")


def sniff(data: bytes) -> bool:
    """PNG, JPEG and TIFF files start with their signature."""
    return data.startswith(_SIGNATURES)


def read(data: bytes, ocr=None) -> TextRecord:
    """The recognised text of every page of the image, or Unreadable naming why."""
    import numpy as np

    from rag.ingest.readers import ocr as engine

    options = ocr or engine.Options()
    frames = _frames(data)
    engine.check_budget(len(frames), options)
    pages, frames_boxes, layout_frames, places = [], [], [], {}
    for number in frames:
        report(f"OCR page {number + 1} of {len(frames)}")
        image = _page(data, number)
        geometry = PageGeometry((0.0, 0.0, float(image.width), float(image.height)))
        fragments, frame, place = engine.read_page(image, number, geometry, options)
        pages.append(fragments)
        layout_frames.append(frame)
        places[number] = place
        frames_boxes.append(geometry.box)
    body = [
        reading_order(fragments, frame, furniture)
        for fragments, frame, furniture in zip(pages, layout_frames, page_furniture(pages, layout_frames))
    ]
    if not any(body):
        raise Unreadable("no text recognised in it; it is a picture without words, or too blurred to read")
    text, boxes, page_starts = assemble(body)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    engine.place_pages(boxes, page_starts, places)  # read straightened: back onto the picture as it is
    return TextRecord(
        kind=KIND,
        text=text,
        page_starts=tuple(page_starts),
        page_frames=tuple(frames_boxes),
        reader_version=READER_VERSION,
        boxes=boxes,
    )


def _frames(data: bytes) -> list[int]:
    """The page numbers (0-based) of the image, each checked against MAX_PIXELS before anything is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            count = getattr(image, "n_frames", 1)
            for number in range(count):
                image.seek(number)
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise Unreadable(
                        f"page {number + 1} is {width:,} × {height:,} pixels, over {MAX_PIXELS:,}; "
                        f"scan it at a lower resolution (300 dpi is plenty)"
                    )
    except Image.DecompressionBombError:
        raise Unreadable(f"it has more than {MAX_PIXELS:,} pixels; scan it at a lower resolution") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError) as error:
        raise Unreadable(f"damaged or truncated image ({error}); save or export it again") from None
    return list(range(count))


def _page(data: bytes, number: int):
    """Page `number` (0-based) as an upright RGB picture."""
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(number)
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, SyntaxError, ValueError, TypeError) as error:
        raise Unreadable(f"damaged or truncated image ({error}); save or export it again") from None


def render_page(data: bytes, page_number: int, boxes, max_pixels: int = 1400) -> bytes:
    """PNG of one page (1-based) with `boxes` (as stored) marked in yellow."""
    image = _page(data, page_number - 1)
    geometry = PageGeometry((0.0, 0.0, float(image.width), float(image.height)))
    image.thumbnail((max_pixels, max_pixels))
    return draw_marks(image, boxes, geometry)
