"""Evidence photos: accept only real JPEG, PNG and WebP pictures, and store clean copies.

A buyer's upload is untrusted in every way: its name, its declared type and its bytes. So the
type is what Pillow can decode, not what the file claims; the size and the pixel count are
limited before any pixel data is decoded; and what is kept is a fresh re-encoding, which drops
EXIF (GPS position, camera serial numbers) and anything hidden after the picture data.

Files are named by a random token and written outside ``static/`` (by default into
``<instance folder>/uploads``), so a photo is only ever served by a view that checks who asks.
The database keeps the metadata this module returns (see ``services._attach_evidence``); when
that transaction fails, ``reconcile.undone_on_error`` removes the files again.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import re
import secrets
import struct
import tempfile
import threading
import unicodedata
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

from PIL import ExifTags, Image

from .errors import InvalidInput, NotFound
from .i18n import _, ngettext

#: Pillow format name -> the content type the photo is stored and served as.
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}

#: How each format is re-encoded. No ``exif=`` or ``xmp=``: leaving them out is what strips them.
#: Fast encoder settings: the time a photo costs is bounded by its pixels, never by ``optimize``.
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "JPEG": {"quality": 85},
    "PNG": {"compress_level": 3},
    "WEBP": {"quality": 85, "method": 2},
}

_KEY_BYTES = 32
#: ``secrets.token_urlsafe(32)`` is always 43 URL-safe characters; nothing else is a key,
#: which rules out ``..``, slashes, absolute paths and our own dot-named temporary files.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")

_READ_CHUNK = 64 * 1024
MAX_NAME_LENGTH = 255

#: What Pillow raises on a damaged or hostile file. Its decoders are not consistent about it,
#: and a file that upsets any of them is simply not a photo we can keep.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


class EvidenceRefused(InvalidInput):
    """An upload that is not kept; the message tells the buyer why and what to send instead.

    ``status`` is the HTTP status a view should answer with: 413 when the file is larger than
    allowed, 400 for everything else.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message, field="evidence")
        self.status = status


def store_photo(
    stream: BinaryIO,
    original_name: str,
    *,
    upload_dir: Path,
    max_bytes: int,
    max_pixels: int,
    max_edge: int,
    label: str = "",
) -> dict[str, Any]:
    """Check one upload, store a clean re-encoding of it (at most ``max_edge`` pixels on its
    longer side), and return its evidence metadata.

    Raises :class:`EvidenceRefused` when the upload is empty, too large, has too many pixels,
    or is not a JPEG, PNG or WebP picture that decodes completely; nothing is written then.
    """
    name = _clean_name(original_name)
    data = _read_at_most(stream, max_bytes + 1)
    if not data:
        raise EvidenceRefused(_("%(photo)s is empty.", photo=_shown(name)))
    if len(data) > max_bytes:
        raise EvidenceRefused(
            _("%(photo)s is larger than %(limit)s; please send a smaller photo.",
              photo=_shown(name), limit=_size(max_bytes)),
            status=413,
        )
    with DECODING, _decode(data, name, max_pixels, max_edge) as image:
        kind = image.format
        encoded, (width, height) = _reencode(image, max_edge)
    storage_key = secrets.token_urlsafe(_KEY_BYTES)
    _write_atomically(Path(upload_dir) / storage_key, encoded)
    return {
        "storage_key": storage_key,
        "original_name": name,
        "content_type": CONTENT_TYPES[kind],
        "byte_size": len(encoded),
        "width": width,
        "height": height,
        "sha256": hashlib.sha256(encoded).hexdigest(),
        "label": label,
    }


def store_photos(
    files: Iterable[Any],
    *,
    settings: Mapping[str, Any],
    instance_path: str | os.PathLike[str],
    already: int = 0,
    label: str = "",
) -> list[dict[str, Any]]:
    """Store several uploads (Werkzeug ``FileStorage``-like) for one case: all of them or none.

    Form parts without a file name are the empty file inputs a browser always sends, so they
    are skipped. ``already`` is how many photos the case has, so the per-case cap counts them.
    If one upload is refused, the ones stored before it in this call are removed again.
    """
    uploads = [item for item in files if item is not None and getattr(item, "filename", None)]
    check_photo_count(already + len(uploads), max_per_case=int(settings["AFTERSALES_UPLOAD_MAX_PER_CASE"]))
    directory = upload_dir(settings, instance_path)
    stored: list[dict[str, Any]] = []
    try:
        for item in uploads:
            stored.append(store_photo(
                item.stream, item.filename, upload_dir=directory, label=label,
                max_bytes=int(settings["AFTERSALES_UPLOAD_MAX_BYTES"]),
                max_pixels=int(settings["AFTERSALES_UPLOAD_MAX_PIXELS"]),
                max_edge=int(settings["AFTERSALES_UPLOAD_MAX_EDGE"]),
            ))
    except BaseException:
        discard(stored, upload_dir=directory)
        raise
    return stored


def check_photo_count(count: int, *, max_per_case: int) -> None:
    """Refuse a case that would hold more than ``max_per_case`` photos in total."""
    if count > max_per_case:
        raise EvidenceRefused(ngettext(
            "A request can have at most %(num)d photo.",
            "A request can have at most %(num)d photos.",
            max_per_case,
        ))


def upload_dir(settings: Mapping[str, Any], instance_path: str | os.PathLike[str], *, create: bool = True) -> Path:
    """The folder photos are stored in, created if missing (unless ``create`` is false: a
    folder that is not there may be a volume not mounted, and must not pass for an empty one).

    ``AFTERSALES_UPLOAD_DIR`` when set, else ``<instance folder>/uploads``. Never point it into
    ``static/``: evidence must not be reachable without the view that checks who asks.
    """
    configured = settings.get("AFTERSALES_UPLOAD_DIR")
    directory = Path(configured) if configured else Path(instance_path) / "uploads"
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    return directory


def is_storage_key(value: object) -> bool:
    """Whether ``value`` has the shape of a key :func:`store_photo` makes."""
    return isinstance(value, str) and _KEY_PATTERN.fullmatch(value) is not None


def evidence_path(storage_key: str, *, upload_dir: Path) -> Path:
    """Where the photo stored under ``storage_key`` lives.

    Only keys made by :func:`store_photo` are accepted, so a key taken from a URL or a
    tampered record cannot name any other file. Anything else is :class:`NotFound`, the same
    answer as for a photo that does not exist.
    """
    if not is_storage_key(storage_key):
        raise NotFound(_("There is no such photo."))
    return Path(upload_dir) / storage_key


def discard(metadata_list: Iterable[Mapping[str, Any]], *, upload_dir: Path) -> None:
    """Delete stored photos whose database records were not written.

    Called while another error is on its way up, so it never raises for a file that is
    already gone or a key that is not ours.
    """
    for metadata in metadata_list:
        try:
            evidence_path(str(metadata.get("storage_key", "")), upload_dir=upload_dir).unlink(missing_ok=True)
        except NotFound:
            continue


# --- reading and decoding --------------------------------------------------------------------
def _read_at_most(stream: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes, so an endless or huge stream costs no more than that to refuse."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = stream.read(min(remaining, _READ_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _decode(data: bytes, name: str, max_pixels: int, max_edge: int) -> Image.Image:
    """The decoded picture, at most a little over ``max_edge`` on its longer side for a JPEG, or
    :class:`EvidenceRefused`.

    Pillow may only try the three accepted formats, so no other parser ever sees the bytes.
    The pixel count comes from the header and is checked before any pixel is decoded; Pillow's
    own decompression-bomb guard (a warning, then an error) is refused the same way. A JPEG is
    decoded straight at a reduced scale (libjpeg's DCT scaling: 1/2, 1/4, 1/8), and one with more
    than :data:`MAX_JPEG_SCANS` scans is refused unread, since each progressive scan is another
    pass over every block of the picture (a few bytes each, so thousands fit in a small file).
    """
    not_a_photo = EvidenceRefused(_("%(photo)s is not a JPEG, PNG or WebP photo.", photo=_shown(name)))
    too_many_pixels = EvidenceRefused(_(
        "%(photo)s has too many pixels; please send a photo of at most %(limit)s megapixels.",
        photo=_shown(name), limit=_number(max_pixels / 1_000_000),
    ))
    damaged = EvidenceRefused(_(
        "%(photo)s could not be read; it may be damaged or incomplete. Please send it again.",
        photo=_shown(name),
    ))
    formats = list(CONTENT_TYPES)
    # catch_warnings changes process-wide state: safe because decoding runs under DECODING only.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=formats) as probe:
                if probe.format not in CONTENT_TYPES:
                    raise not_a_photo
                if probe.width * probe.height > max_pixels:
                    raise too_many_pixels
                if probe.format == "JPEG" and jpeg_scan_count(data, MAX_JPEG_SCANS) > MAX_JPEG_SCANS:
                    raise damaged
                probe.verify()
            # verify() leaves the image unusable; decoding needs a fresh one.
            image = Image.open(io.BytesIO(data), formats=formats)
            if image.format == "JPEG":
                image.draft(None, _fitted(image.size, max_edge))
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise too_many_pixels from error
        except Image.UnidentifiedImageError as error:
            raise not_a_photo from error
        except _DECODE_ERRORS as error:
            raise damaged from error
    return image


def _fitted(size: tuple[int, int], max_edge: int) -> tuple[int, int]:
    """``size`` scaled down (never up) so that its longer side is ``max_edge``."""
    width, height = size
    ratio = min(1.0, max_edge / max(width, height, 1))
    return max(1, math.ceil(width * ratio)), max(1, math.ceil(height * ratio))


#: One photo is decoded at a time in a process (a gunicorn worker's threads take turns), so a
#: worker holds at most one decoded picture (about 4 bytes a pixel, a few times over while it is
#: resized) however many uploads arrive at once.
DECODING = threading.Lock()

#: A baseline JPEG has one scan per component group, a progressive one about ten; cameras and
#: image tools stay well below this.
MAX_JPEG_SCANS = 32


def jpeg_scan_count(data: bytes, stop_after: int) -> int:
    """How many scans (SOS segments) the JPEG ``data`` holds, counting no further than one more
    than ``stop_after``.

    Walks the marker segments by their lengths, so bytes inside EXIF or ICC segments are never
    taken for markers; inside entropy-coded data a 0xFF is only a marker when the next byte is
    neither 0x00 (a stuffed byte) nor a restart marker.
    """
    position, scans, size = 2, 0, len(data)
    while position + 1 < size:
        if data[position] != 0xFF:
            position = data.find(b"\xff", position)
            if position < 0:
                break
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stuffed byte, TEM, restarts
            position += 2
        elif marker == 0xD9:  # end of image
            break
        else:
            if marker == 0xDA:
                scans += 1
                if scans > stop_after:
                    break
            if position + 4 > size:
                break
            position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return scans


# --- re-encoding -----------------------------------------------------------------------------
def _reencode(image: Image.Image, max_edge: int) -> tuple[bytes, tuple[int, int]]:
    """A fresh file in the same format, at most ``max_edge`` pixels on its longer side, turned
    upright, in sRGB, with no EXIF, XMP, ICC or text chunks, and its size as stored.

    Only the pixels and their transparency are carried over: a colour profile is applied (the
    colours converted to sRGB) and then dropped, since a profile is free-form data a hidden
    message could travel in. Animated pictures keep their first frame: evidence is a still photo.
    Encoders run at their fast settings (no ``optimize``): the cost of a photo is then bounded by
    its pixels, which ``max_edge`` bounds.
    """
    kind = image.format
    profile = image.info.get("icc_profile")
    picture = _resizable(image)
    if max(picture.size) > max_edge:  # in place: the decoded picture is ours alone
        picture.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if profile:
        picture = _to_srgb(picture, profile)
    picture = _upright(_plain(picture), image)
    if kind == "JPEG" and picture.mode not in ("L", "RGB"):
        picture = picture.convert("RGB")
    clean = Image.new(picture.mode, picture.size)
    clean.paste(picture)
    buffer = io.BytesIO()
    clean.save(buffer, format=kind, **_SAVE_OPTIONS[kind])
    return buffer.getvalue(), clean.size


def _resizable(image: Image.Image) -> Image.Image:
    """The picture in a mode Pillow resizes smoothly and colour-converts: palette, one-bit and
    transparent-key pictures become L/RGB(A), 16-bit greyscale becomes 8-bit; CMYK stays CMYK
    until its colour profile has been applied."""
    mode = image.mode
    if mode in ("1", "P", "PA") or "transparency" in image.info:
        has_alpha = mode == "PA" or "transparency" in image.info
        grey = mode == "1" or (mode == "L" and has_alpha)
        return image.convert(("LA" if grey else "RGBA") if has_alpha else ("L" if grey else "RGB"))
    if mode.startswith("I") or mode == "F":
        if _is_16_bit(image):
            return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
        return image.convert("L")
    return image


def _plain(image: Image.Image) -> Image.Image:
    """The picture in L, LA, RGB or RGBA: the modes every encoder handles."""
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image
    return image.convert("RGBA" if "A" in image.mode or "a" in image.mode else "RGB")


def _is_16_bit(image: Image.Image) -> bool:
    low, high = image.getextrema()
    return high > 255


def _to_srgb(image: Image.Image, profile: bytes) -> Image.Image:
    """``image`` with its colours converted from ``profile`` to sRGB (alpha kept). A profile
    that can't be read is ignored: the pixels are then kept as they are."""
    from PIL import ImageCms

    alpha = image.getchannel("A") if image.mode in ("LA", "RGBA") else None
    colour = image.convert("RGB") if image.mode in ("LA", "RGBA") else image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        converted = ImageCms.profileToProfile(colour, source, _srgb_profile(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    if converted is None:
        return image
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


_SRGB: Any = None


def _srgb_profile() -> Any:
    global _SRGB
    if _SRGB is None:
        from PIL import ImageCms

        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return _SRGB


def _upright(image: Image.Image, source: Image.Image) -> Image.Image:
    """The picture rotated as ``source``'s EXIF orientation says, since that tag is about to be
    dropped. A broken EXIF block should not cost the buyer their evidence, so it is then ignored.
    """
    try:
        orientation = source.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:
        return image
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


# --- storing ---------------------------------------------------------------------------------
def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that no reader or crash ever sees half a photo.

    The temporary file is dot-named, so it can never be mistaken for a storage key, and it
    is removed again if anything fails.
    """
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- names shown to people -------------------------------------------------------------------
def _clean_name(original_name: str | None) -> str:
    """The uploaded file's own name, for display only: no folders, no control or
    direction-changing characters (which can disguise ``gpj.exe`` as ``exe.jpg``), at most
    255 characters. It never becomes part of a path.
    """
    base = str(original_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    spaced = "".join(" " if char.isspace() else char for char in base)
    visible = "".join(char for char in spaced if not unicodedata.category(char).startswith("C"))
    return " ".join(visible.split())[:MAX_NAME_LENGTH]


def _shown(name: str) -> str:
    return _("\u201c%(name)s\u201d", name=name) if name else _("This photo")


def _size(byte_count: int) -> str:
    """8388608 -> "8 MB", 2000 -> "2 KB": a limit a person can act on."""
    if byte_count >= 1024 * 1024:
        return _("%(n)s MB", n=_number(byte_count / (1024 * 1024)))
    if byte_count >= 1024:
        return _("%(n)s KB", n=_number(byte_count / 1024))
    return _("%(n)d bytes", n=byte_count)


def _number(value: float) -> str:
    """8.0 -> "8", 0.5 -> "0.5": limits read the way a person would write them."""
    return f"{round(value, 1):g}"
