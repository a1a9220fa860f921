"""Images that clients send (``/v1/score``): base64 PNG or JPEG, checked before a single pixel is decoded.

Each image is a data URI (``data:image/png;base64,...``) or bare base64. It must be valid base64, start with
a PNG or JPEG signature, declare a size no larger than the server's limit in its header (checked before
decoding, so a decompression bomb is refused unread), decode without error, and be the model's resolution or
an integer multiple of it (such as the 64x64 previews this server sends for an 8x8 model). A multiple is
averaged down block by block and rounded to 8-bit levels, which gives back the original pixels exactly for a
nearest-neighbour upscale.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

import numpy as np
import torch

from diffsight.errors import DiffsightError

__all__ = ["decode_image"]

_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}
_DATA_URI = re.compile(r"^data:([a-z0-9.+/-]*)(;[a-z0-9=-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def _payload(text: str, where: str) -> bytes:
    match = _DATA_URI.match(text)
    if match is not None:
        media = match.group(1).lower()
        if media not in ("image/png", "image/jpeg", "image/jpg"):
            raise DiffsightError(f"{where} is a data URI of type {media or '(none)'!r}: send image/png or image/jpeg")
        text = text[match.end() :]
    elif text.startswith("data:"):
        raise DiffsightError(f"{where} is a data URI without ';base64,': send data:image/png;base64,<base64>")
    try:
        return base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise DiffsightError(
            f"{where} is not valid base64: send the PNG file's bytes base64-encoded (optionally as a data URI)"
        ) from None


def decode_image(
    text: str, event_shape: tuple[int, ...], *, where: str = "image", max_side: int = 1024, max_bytes: int = 4 << 20
) -> torch.Tensor:
    """One client image as a (C, H, W) tensor in [-1, 1] on the model's grid of ``event_shape``."""
    from PIL import Image

    if len(event_shape) != 3 or event_shape[0] not in (1, 3):
        raise DiffsightError(f"this model's samples have shape {event_shape}: it does not take images")
    channels, height, width = event_shape
    raw = _payload(text, where)
    if len(raw) > max_bytes:
        raise DiffsightError(f"{where} is {len(raw)} bytes; the limit is {max_bytes} bytes")
    kind = next((name for magic, name in _SIGNATURES.items() if raw.startswith(magic)), None)
    if kind is None:
        raise DiffsightError(f"{where} is not a PNG or JPEG file (its first bytes are {raw[:8].hex() or 'empty'})")
    try:
        image = Image.open(io.BytesIO(raw), formats=[kind])
        w, h = image.size  # from the header: nothing decoded yet
        if not (1 <= w <= max_side and 1 <= h <= max_side):
            raise DiffsightError(f"{where} is {w}x{h} pixels; this server takes images up to {max_side} a side")
        image.load()
        image = image.convert("L" if channels == 1 else "RGB")
    except DiffsightError:
        raise
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        reason = re.sub(r"<[^>]*>", "the data", str(err)) or type(err).__name__
        raise DiffsightError(f"{where} is a damaged {kind} file: {reason}") from None
    factor = w // width
    if w % width or h % height or h // height != factor:
        raise DiffsightError(
            f"{where} is {w}x{h} pixels; this model takes {width}x{height} images or an integer multiple "
            f"({2 * width}x{2 * height}, ...)"
        )
    pixels = np.asarray(image, dtype=np.float64).reshape(h, w, -1)  # (H', W', C)
    blocks = pixels.reshape(height, factor, width, factor, channels).mean(axis=(1, 3))  # (H, W, C)
    x = torch.from_numpy(np.round(blocks)).float().permute(2, 0, 1)  # (C, H, W) in 0..255
    return x / 127.5 - 1.0
