"""Evidence photos: only decodable JPEG, PNG and WebP, limited, re-encoded clean, stored safely.

Every file here is a real picture (or a real non-picture) made in memory; nothing is mocked.
"""
from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image, PngImagePlugin
from werkzeug.datastructures import FileStorage

from aftersales.config import defaults
from aftersales.errors import InvalidInput, NotFound
from aftersales.evidence import (
    MAX_JPEG_SCANS,
    EvidenceRefused,
    check_photo_count,
    discard,
    evidence_path,
    jpeg_scan_count,
    store_photo,
    store_photos,
    upload_dir,
)

MAX_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 25_000_000
MAKE = 0x010F
ORIENTATION = 0x0112


# --- pictures made in memory -------------------------------------------------------------------
def picture(kind: str = "JPEG", size: tuple[int, int] = (64, 48), mode: str = "RGB", **save) -> bytes:
    """A small noisy picture, so truncating it really cuts pixel data."""
    image = Image.effect_noise(size, 60).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **save)
    return buffer.getvalue()


def spy_exif(orientation: int = 1) -> Image.Exif:
    """EXIF a buyer would not want published: camera make and a GPS position."""
    exif = Image.Exif()
    exif[MAKE] = "SpyCam"
    exif[ORIENTATION] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (31.0, 14.0, 2.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (121.0, 28.0, 5.0)
    return exif


def hidden_text(kind: str, text: str) -> dict:
    """Save options that hide ``text`` in the file's other metadata: XMP, or a PNG text chunk."""
    if kind == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", text)
        return {"pnginfo": info}
    return {"xmp": text.encode()}


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def store(data: bytes, name: str = "photo.jpg", folder: Path | None = None, **limits):
    limits = {"max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS, "max_edge": defaults()["AFTERSALES_UPLOAD_MAX_EDGE"], **limits}
    return store_photo(io.BytesIO(data), name, upload_dir=folder, **limits)


def upload(data: bytes, name: str) -> FileStorage:
    return FileStorage(stream=io.BytesIO(data), filename=name, content_type="application/octet-stream")


def settings(**overrides) -> dict:
    return {**defaults(), **overrides}


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture
def folder(tmp_path) -> Path:
    path = tmp_path / "uploads"
    path.mkdir()
    return path


# --- what is accepted --------------------------------------------------------------------------
@pytest.mark.parametrize("kind, content_type", [
    ("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp"),
])
def test_jpeg_png_and_webp_are_stored_with_their_type_size_and_checksum(folder, kind, content_type):
    metadata = store(picture(kind, size=(64, 48)), f"photo.{kind.lower()}", folder, label="goods")

    stored = evidence_path(metadata["storage_key"], upload_dir=folder).read_bytes()
    assert metadata["content_type"] == content_type
    assert (metadata["width"], metadata["height"]) == (64, 48)
    assert metadata["byte_size"] == len(stored)
    assert metadata["sha256"] == hashlib.sha256(stored).hexdigest()
    assert metadata["original_name"] == f"photo.{kind.lower()}"
    assert metadata["label"] == "goods"
    assert Image.open(io.BytesIO(stored)).format == kind
    assert files_in(folder) == [metadata["storage_key"]]


def test_metadata_has_every_key_attach_evidence_reads(folder):
    metadata = store(picture("JPEG"), "photo.jpg", folder)

    assert set(metadata) == {"storage_key", "original_name", "content_type", "byte_size",
                             "width", "height", "sha256", "label"}


def test_a_png_named_photo_jpg_is_stored_as_png(folder):
    metadata = store(picture("PNG"), "photo.jpg", folder)

    assert metadata["content_type"] == "image/png"


def test_palette_png_with_transparency_is_accepted_and_keeps_its_transparent_pixels(folder):
    sticker = Image.new("P", (8, 4), 1)
    sticker.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    sticker.paste(0, (0, 0, 4, 4))  # the left half is palette entry 0, declared transparent
    buffer = io.BytesIO()
    sticker.save(buffer, "PNG", transparency=0)
    metadata = store(buffer.getvalue(), "sticker.png", folder)

    stored = Image.open(evidence_path(metadata["storage_key"], upload_dir=folder)).convert("RGBA")
    assert stored.getpixel((0, 0))[3] == 0
    assert stored.getpixel((7, 0)) == (200, 30, 30, 255)


def test_cmyk_jpeg_is_stored_as_rgb(folder):
    metadata = store(picture("JPEG", mode="CMYK"), "print.jpg", folder)

    assert Image.open(evidence_path(metadata["storage_key"], upload_dir=folder)).mode == "RGB"


# --- what is refused ---------------------------------------------------------------------------
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>'
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"


@pytest.mark.parametrize("data, name", [
    pytest.param(SVG, "photo.svg", id="svg"),
    pytest.param(HTML, "photo.jpg", id="html-renamed-jpg"),
    pytest.param(picture("GIF"), "photo.gif", id="gif"),
    pytest.param(picture("GIF"), "photo.jpg", id="gif-renamed-jpg"),
    pytest.param(picture("JPEG", size=(256, 256))[:2000], "photo.jpg", id="truncated-jpeg"),
    pytest.param(picture("PNG", size=(256, 256))[:2000], "photo.png", id="truncated-png"),
    pytest.param(b"\xff\xd8\xff" + b"garbage" * 50, "photo.jpg", id="jpeg-magic-then-garbage"),
    pytest.param(b"", "photo.jpg", id="empty"),
])
def test_files_that_are_not_whole_photos_are_refused_and_nothing_is_written(folder, data, name):
    with pytest.raises(EvidenceRefused) as refused:
        store(data, name, folder)

    assert refused.value.status == 400
    assert refused.value.field == "evidence"
    assert str(refused.value)
    assert files_in(folder) == []


def test_refusals_are_invalid_input_and_name_the_file(folder):
    with pytest.raises(InvalidInput, match="not a JPEG, PNG or WebP") as refused:
        store(SVG, "drawing.svg", folder)

    assert "drawing.svg" in str(refused.value)


def test_file_over_the_byte_limit_is_refused_with_413_after_reading_one_byte_more(folder):
    data = picture("PNG", size=(128, 128))
    stream = io.BytesIO(data + b"\x00" * 10_000)

    with pytest.raises(EvidenceRefused, match="larger than") as refused:
        store_photo(stream, "big.png", upload_dir=folder, max_bytes=1000, max_pixels=MAX_PIXELS, max_edge=2560)

    assert refused.value.status == 413
    assert stream.tell() == 1001
    assert files_in(folder) == []


def test_file_of_exactly_the_byte_limit_is_accepted(folder):
    data = picture("PNG")

    store(data, "photo.png", folder, max_bytes=len(data))

    assert len(files_in(folder)) == 1


def test_photo_over_the_pixel_limit_is_refused_from_its_header(folder):
    with pytest.raises(EvidenceRefused, match="too many pixels") as refused:
        store(picture("JPEG", size=(100, 100)), "photo.jpg", folder, max_pixels=9_999)

    assert refused.value.status == 400
    assert files_in(folder) == []


def test_decompression_bomb_is_refused_and_nothing_is_stored(folder):
    bomb = png_declaring(30_000, 30_000)
    assert len(bomb) < 200

    with pytest.raises(EvidenceRefused, match="too many pixels"):
        store(bomb, "bomb.png", folder)

    assert files_in(folder) == []


@pytest.mark.parametrize("side", [30_000, 10_000], ids=["pillow-error", "pillow-warning"])
def test_pillows_own_bomb_guard_refuses_even_when_the_setting_allows_more(folder, side):
    with pytest.raises(EvidenceRefused, match="too many pixels"):
        store(png_declaring(side, side), "bomb.png", folder, max_pixels=10**12)

    assert files_in(folder) == []


# --- what is kept ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP"])
def test_exif_with_gps_and_camera_make_is_stripped(folder, kind):
    original = picture(kind, exif=spy_exif(), **hidden_text(kind, "GPS 31.2 N 121.5 E"))
    before = Image.open(io.BytesIO(original)).getexif()
    assert before[MAKE] == "SpyCam" and before.get_ifd(ExifTags.IFD.GPSInfo)
    assert b"SpyCam" in original and b"GPS" in original

    metadata = store(original, "photo", folder)

    stored_bytes = evidence_path(metadata["storage_key"], upload_dir=folder).read_bytes()
    stored = Image.open(io.BytesIO(stored_bytes))
    exif = stored.getexif()
    assert MAKE not in exif
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo)
    assert "exif" not in stored.info and "xmp" not in stored.info
    assert b"SpyCam" not in stored_bytes and b"GPS" not in stored_bytes


def test_orientation_is_applied_before_exif_is_dropped(folder):
    image = Image.new("RGB", (40, 20), "red")
    image.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=spy_exif(orientation=6))  # "rotate 90° clockwise"

    metadata = store(buffer.getvalue(), "sideways.jpg", folder)

    stored = Image.open(evidence_path(metadata["storage_key"], upload_dir=folder)).convert("RGB")
    assert (metadata["width"], metadata["height"]) == stored.size == (20, 40)
    assert ORIENTATION not in stored.getexif()
    red, _, blue = stored.getpixel((10, 5))
    assert red > 200 and blue < 60  # the left half is now on top
    red, _, blue = stored.getpixel((10, 35))
    assert red < 60 and blue > 200


def test_identical_uploads_get_different_random_names(folder):
    data = picture("JPEG")

    first, second = store(data, "photo.jpg", folder), store(data, "photo.jpg", folder)

    assert first["storage_key"] != second["storage_key"]
    assert first["sha256"] == second["sha256"]
    assert "photo" not in first["storage_key"]
    assert files_in(folder) == sorted([first["storage_key"], second["storage_key"]])


@pytest.mark.parametrize("given, shown", [
    ("../../etc/passwd.jpg", "passwd.jpg"),
    ("C:\\Users\\li\\Desktop\\破损.jpg", "破损.jpg"),
    ("gpj.\u202eexe.jpg", "gpj.exe.jpg"),
    ("  tab\tand\nnewline.png ", "tab and newline.png"),
    ("x" * 300 + ".jpg", "x" * 255),
    ("", ""),
])
def test_original_name_is_kept_only_as_a_plain_display_name(folder, given, shown):
    assert store(picture("JPEG"), given, folder)["original_name"] == shown


# --- several uploads for one case --------------------------------------------------------------
def test_photo_count_up_to_the_cap_is_fine_and_one_more_is_refused():
    check_photo_count(10, max_per_case=10)

    with pytest.raises(EvidenceRefused, match="at most 10 photos") as refused:
        check_photo_count(11, max_per_case=10)

    assert refused.value.status == 400


def test_store_photos_stores_each_upload_and_skips_empty_file_inputs(tmp_path):
    files = [upload(picture("JPEG"), "a.jpg"), FileStorage(stream=io.BytesIO(b""), filename=""),
             upload(picture("PNG"), "b.png"), None]

    stored = store_photos(files, settings=settings(), instance_path=tmp_path, label="parcel")

    assert [item["original_name"] for item in stored] == ["a.jpg", "b.png"]
    assert {item["label"] for item in stored} == {"parcel"}
    assert files_in(tmp_path / "uploads") == sorted(item["storage_key"] for item in stored)


def test_store_photos_counts_the_photos_the_case_already_has(tmp_path):
    files = [upload(picture("JPEG"), f"{n}.jpg") for n in range(3)]

    with pytest.raises(EvidenceRefused, match="at most 10 photos"):
        store_photos(files, settings=settings(), instance_path=tmp_path, already=8)

    assert store_photos(files[:2], settings=settings(), instance_path=tmp_path, already=8)


def test_store_photos_is_all_or_nothing(tmp_path):
    files = [upload(picture("JPEG"), "good.jpg"), upload(picture("PNG"), "good.png"), upload(SVG, "bad.svg")]

    with pytest.raises(EvidenceRefused, match="bad.svg"):
        store_photos(files, settings=settings(), instance_path=tmp_path)

    assert files_in(tmp_path / "uploads") == []


def test_store_photos_applies_the_byte_and_pixel_settings(tmp_path):
    def big():
        return [upload(picture("PNG", size=(200, 200)), "big.png")]

    with pytest.raises(EvidenceRefused) as refused:
        store_photos(big(), settings=settings(AFTERSALES_UPLOAD_MAX_BYTES=500), instance_path=tmp_path)
    assert refused.value.status == 413

    with pytest.raises(EvidenceRefused, match="too many pixels"):
        store_photos(big(), settings=settings(AFTERSALES_UPLOAD_MAX_PIXELS=1000), instance_path=tmp_path)


# --- where files live --------------------------------------------------------------------------
def test_default_settings():
    assert settings()["AFTERSALES_UPLOAD_MAX_BYTES"] == 8 * 1024 * 1024
    assert settings()["AFTERSALES_UPLOAD_MAX_PIXELS"] == 25_000_000
    assert settings()["AFTERSALES_UPLOAD_MAX_PER_CASE"] == 10
    assert settings()["AFTERSALES_UPLOAD_DIR"] is None


def test_upload_dir_defaults_to_instance_uploads_and_is_created(tmp_path):
    folder = upload_dir(settings(), tmp_path / "instance")

    assert folder == tmp_path / "instance" / "uploads"
    assert folder.is_dir()


def test_upload_dir_setting_wins(tmp_path):
    folder = upload_dir(settings(AFTERSALES_UPLOAD_DIR=str(tmp_path / "elsewhere")), tmp_path / "instance")

    assert folder == tmp_path / "elsewhere" and folder.is_dir()


@pytest.mark.parametrize("key", [
    "../x", "..", "/etc/passwd", "a/b", "a\\b", "", ".upload-abc.part",
    "A" * 42, "A" * 44, "A" * 43 + "\n", "../" + "A" * 40, "A" * 42 + ".",
])
def test_evidence_path_refuses_anything_but_a_storage_key(folder, key):
    with pytest.raises(NotFound):
        evidence_path(key, upload_dir=folder)


def test_evidence_path_finds_a_stored_photo(folder):
    key = store(picture("JPEG"), "photo.jpg", folder)["storage_key"]

    assert evidence_path(key, upload_dir=folder) == folder / key


def test_discard_removes_stored_photos_and_ignores_missing_or_foreign_keys(folder):
    stored = [store(picture("JPEG"), "a.jpg", folder), store(picture("PNG"), "b.png", folder)]
    outside = folder.parent / "keep.txt"
    outside.write_text("not evidence")

    discard(stored + [{"storage_key": "../keep.txt"}, {"storage_key": "B" * 43}, {}], upload_dir=folder)

    assert files_in(folder) == []
    assert outside.exists()


# --- bounded work: big photos are scaled down, slow layouts refused ------------------------------
def test_big_photo_is_stored_scaled_down_to_the_max_edge_keeping_its_shape(folder):
    metadata = store(picture("JPEG", size=(3000, 1500)), "wide.jpg", folder, max_edge=1000)

    stored = Image.open(evidence_path(metadata["storage_key"], upload_dir=folder))
    assert (metadata["width"], metadata["height"]) == stored.size == (1000, 500)


def test_photo_within_the_max_edge_keeps_its_size(folder):
    metadata = store(picture("PNG", size=(300, 200)), "small.png", folder, max_edge=1000)

    assert (metadata["width"], metadata["height"]) == (300, 200)


def test_one_bit_noise_png_of_the_original_finding_is_stored_scaled_down_as_greyscale(folder):
    """6 320 x 6 320 of 1-bit noise took 148 s to re-encode with optimize=True; it is now scaled
    to the max edge and saved at fast settings (bench/uploads.py times it)."""
    side = 3000
    noise = Image.frombytes("1", (side, side), bytes(Image.effect_noise((side // 8, side), 128).tobytes()))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")

    metadata = store(buffer.getvalue(), "noise.png", folder, max_edge=800)

    stored = Image.open(evidence_path(metadata["storage_key"], upload_dir=folder))
    assert stored.size == (800, 800) and stored.mode == "L"


def test_sixteen_bit_greyscale_png_keeps_its_brightness(folder):
    grey = Image.new("I;16", (40, 30), 0x8000)  # half way up the 16-bit range
    buffer = io.BytesIO()
    grey.save(buffer, "PNG")

    metadata = store(buffer.getvalue(), "scan.png", folder)

    stored = Image.open(evidence_path(metadata["storage_key"], upload_dir=folder))
    assert stored.mode == "L" and stored.getpixel((5, 5)) == 128


def progressive_jpeg_with_scans(count: int) -> bytes:
    """A progressive JPEG whose last scan is repeated until it has ``count`` scans."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 140, 200)).save(buffer, "JPEG", quality=90, progressive=True)
    data = buffer.getvalue()
    last = data.rfind(b"\xff\xda")
    scans = jpeg_scan_count(data, 10_000)
    return data[:last] + data[last:-2] * (count - scans + 1) + data[-2:]


def test_scan_count_reads_markers_not_bytes_inside_segments():
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[MAKE] = "\xff\xda" * 40  # would look like 40 scans to a naive byte search
    Image.new("RGB", (16, 16), "red").save(buffer, "JPEG", exif=exif)

    assert jpeg_scan_count(buffer.getvalue(), 1000) == 1
    assert jpeg_scan_count(progressive_jpeg_with_scans(25), 1000) == 25


def test_jpeg_with_more_scans_than_the_cap_is_refused_unread(folder):
    accepted = store(progressive_jpeg_with_scans(MAX_JPEG_SCANS), "ok.jpg", folder)
    assert accepted["content_type"] == "image/jpeg"

    with pytest.raises(EvidenceRefused, match="could not be read"):
        store(progressive_jpeg_with_scans(MAX_JPEG_SCANS + 1), "scans.jpg", folder)

    assert files_in(folder) == [accepted["storage_key"]]


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP"])
def test_colour_profile_is_applied_and_dropped(folder, kind):
    """An ICC profile is free-form data (a hidden channel); the colours it describes are
    converted to sRGB and the profile is not stored."""
    from PIL import ImageCms

    marker = b"hidden-message-in-the-profile"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + marker  # read by its header's size
    data = picture(kind, icc_profile=profile)
    assert Image.open(io.BytesIO(data)).info["icc_profile"] == profile  # (PNG keeps it compressed)

    metadata = store(data, "photo", folder)

    stored_bytes = evidence_path(metadata["storage_key"], upload_dir=folder).read_bytes()
    assert "icc_profile" not in Image.open(io.BytesIO(stored_bytes)).info
    assert marker not in stored_bytes


def test_cmyk_jpeg_with_a_profile_that_does_not_fit_is_still_stored_as_rgb_without_it(folder):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # unreadable as CMYK: ignored
    buffer = io.BytesIO()
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(buffer, "JPEG", quality=95, icc_profile=profile)

    metadata = store(buffer.getvalue(), "print.jpg", folder)

    stored = Image.open(evidence_path(metadata["storage_key"], upload_dir=folder))
    assert stored.mode == "RGB" and "icc_profile" not in stored.info
    red, green, blue = stored.getpixel((10, 10))
    assert red > 200 and green < 60 and blue < 60  # full magenta and yellow: red


def test_store_photos_applies_the_max_edge_setting(tmp_path):
    stored = store_photos([upload(picture("JPEG", size=(600, 300)), "a.jpg")],
                          settings=settings(AFTERSALES_UPLOAD_MAX_EDGE=200), instance_path=tmp_path)

    assert (stored[0]["width"], stored[0]["height"]) == (200, 100)
