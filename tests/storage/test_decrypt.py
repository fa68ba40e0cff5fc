"""storage.decrypt against the WhatsApp media vectors (tests/media_vectors) and streams made here."""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from storage.decrypt import (
    CHECK_ORDER, HKDF_INFO, DecryptResult, MediaDecryptor, MediaKeys, PlainVerifier, VerificationError,
    decode_digest, derive_keys,
)
from storage.files import AtomicFile
from tests.media_support import encrypt

VECTORS = Path(__file__).resolve().parent.parent / "media_vectors"
TYPES = ["image", "video", "audio", "document", "sticker", "image_randomkey"]
CHUNK_SIZES = [1 << 20, 1, 7, 4096, 65537]
NEGATIVE = json.loads((VECTORS / "negative" / "expected.json").read_text())["files"]
MIB = 1 << 20


def vector(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.json").read_text())


def chunks(data: bytes, size: int):
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start:start + size])


def decrypt(path: Path, data: bytes, spec: dict, chunk_size: int = MIB, **overrides) -> DecryptResult:
    keys = derive_keys(base64.b64decode(spec["mediaKey"]), spec["mediaType"])
    expected = {"file_enc_sha256": base64.b64decode(spec["fileEncSha256"]),
                "file_sha256": base64.b64decode(spec["fileSha256"]),
                "file_length": spec["fileLength"]}
    expected.update(overrides)
    with open(path, "wb") as sink, MediaDecryptor(keys, sink, **expected) as decryptor:
        for chunk in chunks(data, chunk_size):
            decryptor.feed(chunk)
        return decryptor.finish()


def hash_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "media-hash"]


@pytest.fixture(scope="module")
def big():
    """20 MB of random media, encrypted, with what a webhook would say about it."""
    plaintext = os.urandom(20_000_003)
    media_key = os.urandom(32)
    encrypted = encrypt(plaintext, media_key, "video")
    return {"plaintext": plaintext, "encrypted": encrypted, "keys": derive_keys(media_key, "video"),
            "file_sha256": hashlib.sha256(plaintext).digest(),
            "file_enc_sha256": hashlib.sha256(encrypted).digest()}


# --- the vectors ----------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("name", TYPES)
def test_vector_decrypts_byte_exact(tmp_path, name, chunk_size):
    spec = vector(name)
    encrypted = (VECTORS / spec["encFile"]).read_bytes()
    plaintext = (VECTORS / spec["plaintextFile"]).read_bytes()
    target = tmp_path / "out"

    result = decrypt(target, encrypted, spec, chunk_size)

    assert target.read_bytes() == plaintext
    assert result == DecryptResult(size=len(plaintext), sha256=hashlib.sha256(plaintext).hexdigest(),
                                   enc_size=len(encrypted), enc_sha256=hashlib.sha256(encrypted).hexdigest())


@pytest.mark.parametrize("name", TYPES)
def test_derived_keys_match_vectors(name):
    spec = vector(name)
    keys = derive_keys(base64.b64decode(spec["mediaKey"]), spec["mediaType"])
    assert keys.iv.hex() == spec["ivHex"]
    assert keys.cipher_key.hex() == spec["cipherKeyHex"]
    assert keys.mac_key.hex() == spec["macKeyHex"]
    assert keys.ref_key.hex() == spec["refKeyHex"]
    assert HKDF_INFO[spec["mediaType"]] == spec["hkdfInfo"].encode()


@pytest.mark.parametrize("chunk_size", [MIB, 7])
@pytest.mark.parametrize("file_name", sorted(NEGATIVE))
def test_negative_vectors_are_rejected_with_the_expected_checks(tmp_path, file_name, chunk_size):
    spec = vector("image")
    encrypted = (VECTORS / "negative" / file_name).read_bytes()
    with pytest.raises(VerificationError) as caught:
        decrypt(tmp_path / "out", encrypted, spec, chunk_size)
    assert set(caught.value.checks) == set(NEGATIVE[file_name]["fails_checks"])
    assert caught.value.checks == sorted(caught.value.checks, key=CHECK_ORDER.index)


def test_rejected_download_leaves_no_file_behind(tmp_path):
    spec = vector("image")
    keys = derive_keys(base64.b64decode(spec["mediaKey"]), "image")
    target = tmp_path / "media" / "image.png"
    with pytest.raises(VerificationError):
        with AtomicFile(target) as out:
            with MediaDecryptor(keys, out.file, file_sha256=base64.b64decode(spec["fileSha256"])) as decryptor:
                decryptor.feed((VECTORS / "negative" / "image_last_block_byte_flipped.enc").read_bytes())
                decryptor.finish()
            out.commit()
    assert list(target.parent.iterdir()) == []


def test_messages_name_the_first_failure_and_list_the_others(tmp_path):
    spec = vector("image")
    encrypted = (VECTORS / "negative" / "image_ciphertext_first_byte_flipped.enc").read_bytes()
    with pytest.raises(VerificationError) as caught:
        decrypt(tmp_path / "out", encrypted, spec)
    assert str(caught.value) == "MAC mismatch: corrupt download; also failed: file_enc_sha256, file_sha256"

    appended = (VECTORS / "negative" / "image_appended_1_byte.enc").read_bytes()
    with pytest.raises(VerificationError, match="wrong length: 12443 bytes is not whole AES blocks"):
        decrypt(tmp_path / "out", appended, spec)
    with pytest.raises(VerificationError, match="wrong length: 0 bytes") as caught:
        decrypt(tmp_path / "out", b"", spec)
    assert caught.value.checks == ["length"]


def test_checks_without_expected_values_only_check_the_mac_and_padding(tmp_path):
    spec = vector("audio")
    encrypted = (VECTORS / "audio.enc").read_bytes()
    result = decrypt(tmp_path / "out", encrypted, spec, file_enc_sha256=None, file_sha256=None, file_length=None)
    assert result.size == spec["fileLength"]
    corrupt = encrypted[:100] + bytes([encrypted[100] ^ 1]) + encrypted[101:]
    with pytest.raises(VerificationError) as caught:
        decrypt(tmp_path / "out", corrupt, spec, file_enc_sha256=None, file_sha256=None, file_length=None)
    assert caught.value.checks == ["mac"]


def test_wrong_file_length_alone(tmp_path):
    spec = vector("document")
    encrypted = (VECTORS / "document.enc").read_bytes()
    with pytest.raises(VerificationError, match="decrypted 600 bytes, the message says 601") as caught:
        decrypt(tmp_path / "out", encrypted, spec, file_length=601)
    assert caught.value.checks == ["file_length"]


def test_mutable_chunks_are_copied_before_the_side_thread_reads_them(tmp_path, big):
    buffer = bytearray(MIB)
    with open(tmp_path / "out", "wb") as sink, MediaDecryptor(
            big["keys"], sink, file_enc_sha256=big["file_enc_sha256"], file_sha256=big["file_sha256"],
            file_length=len(big["plaintext"])) as decryptor:
        view = memoryview(big["encrypted"])
        for start in range(0, len(view), MIB):
            piece = view[start:start + MIB]
            buffer[:len(piece)] = piece
            decryptor.feed(memoryview(buffer)[:len(piece)])
            buffer[:] = bytes(MIB)  # the caller reuses its buffer at once
        assert decryptor.finish().size == len(big["plaintext"])


# --- keys, digests, secrets -----------------------------------------------------------------

def test_derive_keys_types():
    media_key = os.urandom(32)
    assert derive_keys(media_key, "ptt") == derive_keys(media_key, "audio")
    assert derive_keys(media_key, "gif") == derive_keys(media_key, "video")
    assert derive_keys(media_key, "sticker") == derive_keys(media_key, "image")
    assert derive_keys(media_key, "document") != derive_keys(media_key, "image")
    with pytest.raises(ValueError, match="media type"):
        derive_keys(media_key, "hologram")
    with pytest.raises(ValueError, match="32 bytes"):
        derive_keys(media_key[:16], "image")


def test_secrets_never_show(tmp_path):
    spec = vector("image")
    media_key = base64.b64decode(spec["mediaKey"])
    keys = derive_keys(media_key, "image")
    secrets = [spec["mediaKey"], spec["cipherKeyHex"], spec["macKeyHex"], spec["ivHex"], spec["refKeyHex"]]
    shown = [repr(keys), str(keys)]
    for file_name in NEGATIVE:
        with pytest.raises(VerificationError) as caught:
            decrypt(tmp_path / "out", (VECTORS / "negative" / file_name).read_bytes(), spec)
        shown += [str(caught.value), repr(caught.value)]
    for text in shown:
        for secret in secrets:
            assert secret not in text
        assert repr(keys.cipher_key) not in text


def test_decode_digest():
    digest = hashlib.sha256(b"zaphook").digest()
    assert decode_digest(digest.hex()) == digest
    assert decode_digest(digest.hex().upper()) == digest
    assert decode_digest(base64.b64encode(digest).decode()) == digest
    assert decode_digest(base64.urlsafe_b64encode(digest).decode().rstrip("=")) == digest
    assert decode_digest(f"  {base64.b64encode(digest).decode()}\n") == digest
    assert decode_digest(base64.b64encode(digest)) == digest
    assert decode_digest(digest) == digest
    for bad in (None, "", "not a digest", digest.hex()[:-2], base64.b64encode(digest[:20]).decode(), "zz" * 32):
        assert decode_digest(bad) is None


# --- the side thread ------------------------------------------------------------------------

def test_large_stream_through_the_side_thread(tmp_path, big):
    target = tmp_path / "out"
    seen: list[int] = []
    with open(target, "wb") as sink, MediaDecryptor(
            big["keys"], sink, file_enc_sha256=big["file_enc_sha256"], file_sha256=big["file_sha256"],
            file_length=len(big["plaintext"])) as decryptor:
        for chunk in chunks(big["encrypted"], MIB):
            decryptor.feed(chunk)
            seen.append(len(hash_threads()))
        result = decryptor.finish()
    assert max(seen) == 1 and seen[0] == 0  # inline for the first MiB, then one side thread
    assert hash_threads() == []
    assert result.size == len(big["plaintext"])
    assert result.sha256 == big["file_sha256"].hex()
    assert result.enc_sha256 == big["file_enc_sha256"].hex()
    assert target.read_bytes() == big["plaintext"]


@pytest.mark.parametrize("chunk_size", [MIB, 65537 * 3])
def test_flipped_byte_in_a_large_stream_is_caught(tmp_path, big, chunk_size):
    encrypted = bytearray(big["encrypted"])
    encrypted[len(encrypted) // 2] ^= 0x40
    with pytest.raises(VerificationError) as caught:
        with open(tmp_path / "out", "wb") as sink, MediaDecryptor(
                big["keys"], sink, file_enc_sha256=big["file_enc_sha256"], file_sha256=big["file_sha256"],
                file_length=len(big["plaintext"])) as decryptor:
            for chunk in chunks(bytes(encrypted), chunk_size):
                decryptor.feed(chunk)
            decryptor.finish()
    assert caught.value.checks == ["mac", "file_enc_sha256", "file_sha256"]
    assert hash_threads() == []


def test_aborted_decryptor_stops_its_thread(tmp_path, big):
    with open(tmp_path / "out", "wb") as sink:
        decryptor = MediaDecryptor(big["keys"], sink)
        pieces = chunks(big["encrypted"], MIB)
        for _ in range(8):
            decryptor.feed(next(pieces))
        thread = decryptor._worker.thread
        assert thread.is_alive()
        decryptor.close()
        assert not thread.is_alive()
        with pytest.raises(RuntimeError):
            decryptor.feed(b"more")
        with pytest.raises(RuntimeError):
            decryptor.finish()
    assert hash_threads() == []


def test_network_error_half_way_stops_the_thread(tmp_path, big):
    def download():
        for number, chunk in enumerate(chunks(big["encrypted"], MIB)):
            if number == 5:
                raise ConnectionError("connection reset")
            yield chunk

    with pytest.raises(ConnectionError):
        with open(tmp_path / "out", "wb") as sink, MediaDecryptor(big["keys"], sink) as decryptor:
            for chunk in download():
                decryptor.feed(chunk)
            decryptor.finish()
    assert hash_threads() == []


def test_failing_sink_stops_the_thread_and_the_decryptor(big):
    class FullDisk:
        def __init__(self):
            self.writes = 0

        def write(self, data):
            self.writes += 1
            if self.writes > 10:
                raise OSError(28, "No space left on device")
            return len(data)

    decryptor = MediaDecryptor(big["keys"], FullDisk())
    with pytest.raises(OSError):
        for chunk in chunks(big["encrypted"], MIB):
            decryptor.feed(chunk)
    assert hash_threads() == []
    with pytest.raises(RuntimeError):
        decryptor.finish()


def test_abandoned_decryptor_stops_its_thread(tmp_path, big):
    with open(tmp_path / "out", "wb") as sink:
        decryptor = MediaDecryptor(big["keys"], sink)
        for chunk in list(chunks(big["encrypted"], MIB))[:3]:
            decryptor.feed(chunk)
        thread = decryptor._worker.thread
        del decryptor
        gc.collect()
        thread.join(timeout=5)
        assert not thread.is_alive()


# --- already decrypted bytes ----------------------------------------------------------------

def plain(path: Path, data: bytes, chunk_size: int = 4096, **expected) -> DecryptResult:
    with open(path, "wb") as sink, PlainVerifier(sink, **expected) as verifier:
        for chunk in chunks(data, chunk_size):
            verifier.feed(chunk)
        return verifier.finish()


def test_plain_verifier_good(tmp_path):
    data = (VECTORS / "video.mp4").read_bytes()
    digest = hashlib.sha256(data).digest()
    for expected in ({"file_sha256": digest, "sha256_hex": digest.hex(), "file_length": len(data)},
                     {"sha256_hex": base64.b64encode(digest).decode()},
                     {"sha256_hex": digest.hex().upper()},
                     {"file_sha256": base64.b64encode(digest)},
                     {}):
        result = plain(tmp_path / "out", data, **expected)
        assert result == DecryptResult(size=len(data), sha256=digest.hex(), enc_size=len(data),
                                       enc_sha256=digest.hex())
        assert (tmp_path / "out").read_bytes() == data


def test_plain_verifier_bad(tmp_path):
    data = (VECTORS / "audio.ogg").read_bytes()
    digest = hashlib.sha256(data).digest()
    other = hashlib.sha256(b"something else").digest()

    with pytest.raises(VerificationError, match="^file_sha256 mismatch") as caught:
        plain(tmp_path / "out", data, file_sha256=other, sha256_hex=digest.hex(), file_length=len(data))
    assert caught.value.checks == ["file_sha256"]

    with pytest.raises(VerificationError, match="^sha256 mismatch") as caught:
        plain(tmp_path / "out", data, sha256_hex=base64.b64encode(other).decode())
    assert caught.value.checks == ["sha256"]

    with pytest.raises(VerificationError, match="got 4096 bytes, expected 4095") as caught:
        plain(tmp_path / "out", data, file_sha256=digest, file_length=len(data) - 1)
    assert caught.value.checks == ["file_length"]

    with pytest.raises(VerificationError) as caught:
        plain(tmp_path / "out", data[:-1], file_sha256=digest, sha256_hex=digest.hex(), file_length=len(data))
    assert caught.value.checks == ["file_sha256", "sha256", "file_length"]
    assert str(caught.value).endswith("also failed: sha256, file_length")

    with pytest.raises(VerificationError, match="not a SHA-256 digest") as caught:
        plain(tmp_path / "out", data, sha256_hex="not-a-digest")
    assert caught.value.checks == ["sha256"]


def test_media_keys_are_frozen():
    keys = derive_keys(os.urandom(32), "image")
    assert isinstance(keys, MediaKeys)
    with pytest.raises(AttributeError):
        keys.iv = b"x"  # type: ignore[misc]
