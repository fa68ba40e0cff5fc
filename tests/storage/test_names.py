"""Media file names: the right extension, and no payload can put a file outside the media folder."""

from __future__ import annotations

import hashlib
import mimetypes
import re
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from storage import names
from storage.names import (
    MEDIA_TYPES,
    extension_for,
    instance_folder_name,
    media_file_name,
    media_path,
    safe_component,
)

WHEN = datetime(2024, 5, 6, 7, 8, 9)

# Checked here without the module's own helpers, so a bug there cannot hide itself.
RESERVED = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?", re.IGNORECASE)
FORBIDDEN = set('<>:"/\\|?*')


def assert_portable(component: str) -> None:
    """One file name that Linux, macOS and Windows all accept."""
    assert component and component not in (".", "..")
    assert not RESERVED.fullmatch(component), component
    assert component[-1] not in ". ", component
    assert not FORBIDDEN & set(component), component
    assert all(unicodedata.category(char)[0] != "C" for char in component), repr(component)
    assert len(component.encode("utf-8")) <= 255


HOSTILE_NAMES = [
    "../../etc/passwd",
    "..\\..\\windows\\system32\\x.dll",
    "/abs/path.pdf",
    "C:\\Users\\x\\evil.pdf",
    "a\x00b.pdf",
    "CON",
    "con.txt",
    "LPT1.pdf",
    "Aux",
    "COM¹.pdf",
    "nul.tar.gz",
    "  .hidden",
    "...",
    ".",
    "..",
    "name<>:\"|?*.pdf",
    "x" * 500 + ".pdf",
    "ファイル" * 100 + ".docx",
    "\u202efdp.exe",
    "😀🎉.pdf",
    "résumé.pdf",
    "trailing. . .",
    "tab\there\nnewline.txt",
    "",
    None,
]


# --- extensions -----------------------------------------------------------------

@pytest.mark.parametrize("mimetype, media_type, expected", [
    ("audio/ogg; codecs=opus", "audio", ".ogg"),
    ("audio/ogg", "audio", ".ogg"),
    ("AUDIO/OGG;CODECS=OPUS", "audio", ".ogg"),
    ("image/jpeg", "image", ".jpg"),
    ("Image/JPEG", "image", ".jpg"),
    ("image/png", "image", ".png"),
    ("image/webp", "sticker", ".webp"),
    ("image/gif", "image", ".gif"),
    ("video/mp4", "video", ".mp4"),
    ("video/3gpp", "video", ".3gp"),
    ("audio/mpeg", "audio", ".mp3"),
    ("audio/mp4", "audio", ".m4a"),
    ("audio/aac", "audio", ".aac"),
    ("audio/amr", "audio", ".amr"),
    ("application/pdf", "document", ".pdf"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "document", ".docx"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "document", ".xlsx"),
    ("application/vnd.oasis.opendocument.text", "document", ".odt"),
    ("text/plain; charset=utf-8", "document", ".txt"),
    ("text/csv", "document", ".csv"),
    ("application/zip", "document", ".zip"),
    ("application/vnd.android.package-archive", "document", ".apk"),
    ("video/quicktime", "video", ".mov"),  # not in the table: the standard library's built-in types
    # Unknown, empty or meaningless: the media type's default.
    ("application/x-never-heard-of", "image", ".jpg"),
    ("application/x-never-heard-of", "video", ".mp4"),
    ("application/x-never-heard-of", "audio", ".ogg"),
    ("application/x-never-heard-of", "sticker", ".webp"),
    ("application/x-never-heard-of", "document", ".bin"),
    ("application/octet-stream", "image", ".jpg"),
    (None, "audio", ".ogg"),
    ("", "video", ".mp4"),
    ("   ", "sticker", ".webp"),
    ("not a mimetype", "image", ".jpg"),
    ("image/jpeg/../../x", "document", ".bin"),
    ("../../etc/passwd", "document", ".bin"),
    ("image/jpeg\x00", "document", ".bin"),
    (12, "document", ".bin"),
    (None, "something-else", ".bin"),
])
def test_extension_for(mimetype, media_type, expected):
    assert extension_for(mimetype, media_type) == expected


def test_extension_ignores_the_machines_mime_types(monkeypatch):
    # /etc/mime.types and the Windows registry feed the module-level functions only.
    monkeypatch.setattr(mimetypes, "guess_extension", lambda *_args, **_kwargs: ".zzz")
    assert extension_for("application/x-never-heard-of", "document") == ".bin"
    assert extension_for("video/quicktime", "video") == ".mov"


# --- one safe component -----------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\system32\\x.dll", "x.dll"),
    ("/abs/path.pdf", "path.pdf"),
    ("C:\\Users\\x\\evil.pdf", "evil.pdf"),
    ("a\x00b.pdf", "ab.pdf"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("Aux", "_Aux"),
    ("LPT1.pdf", "_LPT1.pdf"),
    ("com9", "_com9"),
    ("COM¹", "_COM¹"),
    ("nul.tar.gz", "_nul.tar.gz"),
    ("CONSOLE.txt", "CONSOLE.txt"),
    ("  .hidden", "hidden"),
    ("...", "file"),
    (".", "file"),
    ("..", "file"),
    ("", "file"),
    (None, "file"),
    ('name<>:"|?*.pdf', "name_.pdf"),
    ("my  holiday\tphoto.jpg", "my_holiday_photo.jpg"),
    ("\u202efdp.exe", "fdp.exe"),
    ("a\u200bb.pdf", "ab.pdf"),
    ("résumé.pdf", "résumé.pdf"),
    ("re\u0301sume\u0301.pdf", "résumé.pdf"),  # decomposed (macOS) input comes out composed
    ("Заявление-2024.docx", "Заявление-2024.docx"),
    ("报告.pdf", "报告.pdf"),
    ("trailing. . .", "trailing"),
    ("_x_", "x"),
    ("3EB0C767D26A1D8E9C4F", "3EB0C767D26A1D8E9C4F"),
])
def test_safe_component(text, expected):
    assert safe_component(text) == expected


def test_safe_component_fallback():
    assert safe_component("...", fallback="unnamed") == "unnamed"
    assert safe_component(None, fallback="") == ""


@pytest.mark.parametrize("text, limit, expected", [
    ("x" * 500 + ".pdf", 100, "x" * 96 + ".pdf"),
    ("abcdef.pdf", 7, "abc.pdf"),
    ("abcdef.pdf", 4, "abcd"),  # no room for the extension
    ("abc.def.pdf", 8, "abc.pdf"),  # no dot left at the end of the stem
    ("CONSOLE.txt", 7, "_CO.txt"),  # the cut made "CON.txt", a device name
    ("x" * 500, 100, "x" * 100),
])
def test_safe_component_cuts_keeping_the_extension(text, limit, expected):
    assert safe_component(text, limit=limit) == expected


def test_safe_component_limits_bytes_too():
    name = safe_component("ファイル" * 100 + ".docx", limit=255)
    assert name.endswith(".docx")
    assert len(name.encode("utf-8")) <= names.MAX_NAME_BYTES


def test_safe_component_rejects_a_useless_limit():
    with pytest.raises(ValueError):
        safe_component("x", limit=0)


@pytest.mark.parametrize("text", HOSTILE_NAMES)
def test_safe_component_is_always_portable(text):
    component = safe_component(text)
    assert_portable(component)
    assert len(component) <= 100
    assert not any(unicodedata.category(char) == "Cf" for char in component)


# --- file names -------------------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (("wapi", "3EB0ABC", "image", "image/jpeg", WHEN), "wapi_3EB0ABC_20240506_070809.jpg"),
    (("evolution", "3EB0ABC", "audio", "audio/ogg; codecs=opus", WHEN), "evolution_3EB0ABC_20240506_070809.ogg"),
    (("wapi", "3EB0ABC", "sticker", None, WHEN), "wapi_3EB0ABC_20240506_070809.webp"),
    (("wapi", "3EB0ABC", "video", "video/3gpp", None), "wapi_3EB0ABC_unknown-time.3gp"),
    # An aware time is written in UTC.
    (("wapi", "3EB0ABC", "image", "image/png", WHEN.replace(tzinfo=timezone(timedelta(hours=-3)))),
     "wapi_3EB0ABC_20240506_100809.png"),
    # Documents keep their name; its own sane extension wins, else the mimetype's.
    (("wapi", "3EB0ABC", "document", "application/pdf", WHEN, "Invoice March.pdf"), "wapi_3EB0ABC_Invoice_March.pdf"),
    (("wapi", "3EB0ABC", "document", "application/pdf", WHEN, "contract"), "wapi_3EB0ABC_contract.pdf"),
    (("wapi", "3EB0ABC", "document", "application/pdf", WHEN, "contract.p df"), "wapi_3EB0ABC_contract.p_df.pdf"),
    (("wapi", "3EB0ABC", "document", "text/plain", WHEN, "data.CSV"), "wapi_3EB0ABC_data.CSV"),
    (("wapi", "3EB0ABC", "document", None, WHEN, "notes"), "wapi_3EB0ABC_notes.bin"),
    (("wapi", "3EB0ABC", "document", "application/pdf", WHEN, "résumé.pdf"), "wapi_3EB0ABC_résumé.pdf"),
    # A document without a usable name, and other types' names, use the time.
    (("wapi", "3EB0ABC", "document", "application/pdf", WHEN, None), "wapi_3EB0ABC_20240506_070809.pdf"),
    (("wapi", "3EB0ABC", "document", "application/pdf", WHEN, "..."), "wapi_3EB0ABC_20240506_070809.pdf"),
    (("wapi", "3EB0ABC", "image", "image/jpeg", WHEN, "ignored.png"), "wapi_3EB0ABC_20240506_070809.jpg"),
])
def test_media_file_name(args, expected):
    assert media_file_name(*args) == expected


def test_changed_message_ids_get_a_hash_and_stay_distinct():
    first = media_file_name("meta", "wamid.HBgL/abc+==", "image", "image/jpeg", WHEN)
    second = media_file_name("meta", "wamid.HBgL+abc/==", "image", "image/jpeg", WHEN)
    assert re.fullmatch(r"meta_wamid\.HBgL_abc-[0-9a-f]{8}_20240506_070809\.jpg", first), first
    assert first != second
    assert media_file_name("meta", "", "image", None, WHEN) != media_file_name("meta", "..", "image", None, WHEN)
    long_id = media_file_name("meta", "A" * 300, "image", None, WHEN)
    assert len(long_id) < 120


@pytest.mark.parametrize("provider, message_id", [
    ("../..", "../../x"),
    ("CON", "NUL"),
    ("wapi", "\u202e" + "ファイル" * 100),
    ("供应商" * 40, "id"),
    (None, None),
])
def test_hostile_providers_and_ids_give_portable_names(provider, message_id):
    for original in (None, "x" * 300 + ".pdf"):
        name = media_file_name(provider, message_id, "document", "application/pdf", WHEN, original)
        assert_portable(name)
        assert len(name.encode("utf-8")) <= names.MAX_NAME_BYTES


# --- the instance's folder ----------------------------------------------------------

HASHED = "-[0-9a-f]{8}"


@pytest.mark.parametrize("external_id, expected", [
    # Already a portable name: used as it is.
    ("3B6XIW-ZTS923-GEAY6V", "instance_3B6XIW-ZTS923-GEAY6V"),  # issue 12's W-API example
    ("instance_3_553175564133", "instance_instance_3_553175564133"),  # an Evolution name
    ("106540352242922", "instance_106540352242922"),  # a Meta phone_number_id
    ("tigo1", "instance_tigo1"),
    ("instância", "instance_instância"),
    ("CON", "instance_CON"),  # after the prefix, not a device name
    ("lpt1.txt", "instance_lpt1.txt"),
    # Anything else: cleaned, and a hash of the id as it came.
    ("Loja Centro", "instance_Loja_Centro" + HASHED),
    ("minha/instância", "instance_minha_instância" + HASHED),
    ("minha\\instância", "instance_minha_instância" + HASHED),
    ("a/b", "instance_a_b" + HASHED),
    ("C:\\loja", "instance_C__loja" + HASHED),  # the colon and the backslash each become "_"
    ("loja:centro", "instance_loja_centro" + HASHED),
    ("loja\x00\u202e", "instance_loja" + HASHED),
    ("loja. . .", "instance_loja" + HASHED),
    ("inst\u00e2ncia".replace("\u00e2", "a\u0302"), "instance_instância" + HASHED),  # decomposed: composed
    ("x" * 300, "instance_" + "x" * 71 + HASHED),
    ("ファイル" * 100, "instance_" + "ファイル" * 15 + HASHED),  # 200 bytes at most
    ("", "instance" + HASHED),
    ("///", "instance" + HASHED),
    ("..", "instance" + HASHED),
    ("\u200b", "instance" + HASHED),
    # A safe id that ends like a hash could be the folder of another id: hashed as well.
    ("loja-0a1b2c3d", "instance_loja-0a1b2c3d" + HASHED),
])
def test_instance_folder_name(external_id, expected):
    folder = instance_folder_name(external_id)
    assert re.fullmatch(expected, folder), folder
    assert_portable(folder)
    assert len(folder) <= names.INSTANCE_FOLDER_LIMIT
    assert len(folder.encode("utf-8")) <= names.MAX_NAME_BYTES


@pytest.mark.parametrize("first, second", [
    ("a/b", "a_b"),
    ("a/b", "a\\b"),
    ("minha/instância", "minha_instância"),
    ("Loja Centro", "Loja_Centro"),
    ("Loja", "Loja "),
    ("", ".."),
    ("x" * 300, "x" * 301),
    ("loja_0a1b2c3d", "loja-0a1b2c3d"),
])
def test_two_instance_ids_never_share_a_folder(first, second):
    assert instance_folder_name(first) != instance_folder_name(second)


def test_the_instance_folder_of_a_changed_id_depends_only_on_the_id():
    assert instance_folder_name("minha/instância") == instance_folder_name("minha/instância")
    hashed = instance_folder_name("a/b")
    assert hashed.endswith("-" + hashlib.sha256(b"a/b").hexdigest()[:8])


@pytest.mark.parametrize("external_id", [None, 3, b"3B6XIW"])
def test_an_instance_id_that_is_not_text_is_refused(external_id):
    with pytest.raises(ValueError):
        instance_folder_name(external_id)


# --- paths ----------------------------------------------------------------------

@pytest.mark.parametrize("original", HOSTILE_NAMES)
@pytest.mark.parametrize("media_type", sorted(MEDIA_TYPES))
def test_hostile_names_stay_inside_the_media_folder(tmp_path, media_type, original):
    media_dir = tmp_path / "media"
    file_name = media_file_name("wapi", "3EB0ABC", media_type, "application/pdf", WHEN, original)
    path = media_path(media_dir, 7, "3B6XIW-ZTS923-GEAY6V", media_type, file_name)

    type_dir = media_dir / "cliente_7" / "instance_3B6XIW-ZTS923-GEAY6V" / media_type
    assert path.parent == type_dir
    assert path.resolve().is_relative_to(media_dir.resolve())
    assert path.resolve().parent == type_dir.resolve()
    assert len(path.relative_to(type_dir).parts) == 1
    for component in path.relative_to(media_dir).parts:
        assert_portable(component)


@pytest.mark.parametrize("external_id", HOSTILE_NAMES[:-1] + ["../../..", "..\\..", "/", "\\", "C:", "~"])
def test_hostile_instance_ids_stay_inside_the_media_folder(tmp_path, external_id):
    media_dir = tmp_path / "media"
    path = media_path(media_dir, 7, external_id, "image", "a.jpg")

    client_dir = media_dir / "cliente_7"
    assert path.resolve().is_relative_to(client_dir.resolve())
    assert len(path.relative_to(client_dir).parts) == 3
    assert path.relative_to(client_dir).parts[1:] == ("image", "a.jpg")
    for component in path.relative_to(media_dir).parts:
        assert_portable(component)


def test_media_path_layout(tmp_path):
    path = media_path(tmp_path, 2, "3B6XIW-ZTS923-GEAY6V", "audio", "wapi_X_20240506_070809.ogg")
    assert path == tmp_path / "cliente_2" / "instance_3B6XIW-ZTS923-GEAY6V" / "audio" / "wapi_X_20240506_070809.ogg"


def test_media_path_is_relative_to_a_relative_media_dir():
    path = media_path(Path("media"), 1, "tigo1", "image", "a.jpg")
    assert path.relative_to(Path("media")) == Path("cliente_1/instance_tigo1/image/a.jpg")


@pytest.mark.parametrize("media_type", ["", "images", "IMAGE", "../image", "voice", None])
def test_media_path_refuses_unknown_media_types(tmp_path, media_type):
    with pytest.raises(ValueError):
        media_path(tmp_path, 1, "tigo1", media_type, "a.jpg")


@pytest.mark.parametrize("file_name", [
    "", ".", "..", "../a.jpg", "a/b.jpg", "a\\b.jpg", "/etc/passwd", "CON", "con.txt",
    "a.jpg.", "a.jpg ", "a:b.jpg", "a\x00.jpg", "a\u202e.jpg", "x" * 300, None,
])
def test_media_path_refuses_bad_file_names(tmp_path, file_name):
    with pytest.raises(ValueError):
        media_path(tmp_path, 1, "tigo1", "image", file_name)


@pytest.mark.parametrize("client_id, instance_id", [
    (-1, "tigo1"), ("1", "tigo1"), ("../1", "tigo1"), (True, "tigo1"), (None, "tigo1"), (1, None), (1, 2),
])
def test_media_path_refuses_bad_ids(tmp_path, client_id, instance_id):
    with pytest.raises(ValueError):
        media_path(tmp_path, client_id, instance_id, "image", "a.jpg")


def test_media_path_refuses_a_link_out_of_the_media_folder(tmp_path):
    media_dir = tmp_path / "media"
    outside = tmp_path / "elsewhere"
    media_dir.mkdir()
    outside.mkdir()
    try:
        (media_dir / "cliente_1").symlink_to(outside, target_is_directory=True)
    except OSError:
        pytest.skip("cannot make symbolic links here")
    with pytest.raises(ValueError):
        media_path(media_dir, 1, "tigo1", "image", "a.jpg")
    assert media_path(media_dir, 2, "tigo1", "image", "a.jpg").parent == media_dir / "cliente_2" / "instance_tigo1" / "image"
