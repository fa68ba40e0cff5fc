"""Decrypting and verifying downloaded media as it streams to disk.

WhatsApp's CDN serves media encrypted: AES-256-CBC with PKCS7 padding, followed by the first
10 bytes of HMAC-SHA256(macKey, iv || ciphertext). The keys come from the message's 32-byte
mediaKey through HKDF-SHA256 with a per-type info string. The message also carries
fileEncSha256 (SHA-256 of the whole encrypted file, MAC included), fileSha256 (SHA-256 of the
plaintext) and fileLength (plaintext length).

:class:`MediaDecryptor` takes the encrypted bytes in chunks of any size and writes the plaintext
to a file the caller owns, in constant memory; :meth:`MediaDecryptor.finish` then checks
everything it can and raises :class:`VerificationError` naming every check that failed, so the
caller deletes its temporary file instead of keeping a corrupt or substituted one.
:class:`PlainVerifier` does the same for bytes a provider hands over already decrypted.

Speed: hashing is the expensive part (three SHA-256 passes over every byte), so on streams large
enough to pay for it the two hashes of the encrypted stream run on one side thread (hashlib and
hmac release the GIL), while the caller's thread decrypts into a reused buffer, hashes the
plaintext and writes it. Nothing secret (the mediaKey, the derived keys) is ever logged or put in
an exception message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import BinaryIO, Optional, Union

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from codes import Text, say

log = logging.getLogger(__name__)

Bytes = Union[bytes, bytearray, memoryview]

# HKDF info per media type. Voice notes ("ptt") use the audio keys, GIFs and round video notes
# ("ptv") the video keys, stickers the image keys.
HKDF_INFO: dict[str, bytes] = {
    "image": b"WhatsApp Image Keys",
    "sticker": b"WhatsApp Image Keys",
    "video": b"WhatsApp Video Keys",
    "gif": b"WhatsApp Video Keys",
    "ptv": b"WhatsApp Video Keys",
    "audio": b"WhatsApp Audio Keys",
    "ptt": b"WhatsApp Audio Keys",
    "voice": b"WhatsApp Audio Keys",
    "document": b"WhatsApp Document Keys",
}

MEDIA_KEY_SIZE = 32
EXPANDED_KEY_SIZE = 112
BLOCK = 16
MAC_SIZE = 10
DIGEST_SIZE = 32
# Bytes of the encrypted stream that feed() never decrypts: the trailing MAC and the last
# ciphertext block, whose plaintext carries the padding and is only known to be last at finish().
HOLD_BACK = MAC_SIZE + BLOCK
# Streams up to this size are hashed inline: starting a thread costs more than it saves.
INLINE_LIMIT = 1 << 20
# How many chunks may wait for the side thread: bounds memory (a few MiB with 1 MiB chunks).
QUEUE_CHUNKS = 4
# Largest piece decrypted at once: bounds the output buffer whatever chunk size the caller uses.
DECRYPT_SLICE = 1 << 20

# Order in which failed checks are reported: the first is the most telling cause.
CHECK_ORDER = ("length", "mac", "file_enc_sha256", "padding", "file_sha256", "sha256", "file_length")

CHECK_MESSAGES = {
    "length": "wrong length: the download is not whole AES blocks plus a 10-byte MAC",
    "mac": "MAC mismatch: corrupt download",
    "file_enc_sha256": "file_enc_sha256 mismatch: the download is not the encrypted file the message points to",
    "padding": "bad padding: the last block does not decrypt to PKCS7 padding (corrupt download or wrong key)",
    "file_sha256": "file_sha256 mismatch: the decrypted file is not the one the sender sent",
    "sha256": "sha256 mismatch: the file is not the one the provider described",
    "file_length": "file_length mismatch: the file does not have the length the message gives",
}


@dataclass(frozen=True)
class MediaKeys:
    """The keys HKDF derives from a mediaKey. Never shown in a repr: they decrypt the media."""

    iv: bytes = field(repr=False)
    cipher_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)
    ref_key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "MediaKeys(<redacted>)"


@dataclass(frozen=True)
class DecryptResult:
    """What was written: plaintext size and SHA-256 (hex), and the same for the bytes received."""

    size: int
    sha256: str
    enc_size: int
    enc_sha256: str


class VerificationError(Exception):
    """The download does not check out; ``checks`` names every check that failed.

    The message explains the first failure (in :data:`CHECK_ORDER`) to a person and lists the
    others, so one line in a log says both what went wrong and how sure we are of it.
    """

    def __init__(self, checks: list[str], details: Optional[dict[str, str]] = None) -> None:
        details = details or {}
        self.checks = sorted(set(checks), key=_check_rank)
        if self.checks:
            first, rest = self.checks[0], self.checks[1:]
            message = details.get(first) or CHECK_MESSAGES.get(first, f"{first} check failed")
            if rest:
                message += f"; also failed: {', '.join(rest)}"
        else:
            message = "verification failed"
        super().__init__(message)

    @property
    def text(self) -> Text:
        """The first failed check, and the others, as a code for the dashboard."""
        first = self.checks[0] if self.checks else None
        if first not in CHECK_MESSAGES:
            return say("media_error.failed", reason=str(self))
        text = say(f"media_error.check.{first}")
        return text if len(self.checks) == 1 else say("media_error.checks", first=text, others=", ".join(self.checks[1:]))


def _check_rank(name: str) -> int:
    return CHECK_ORDER.index(name) if name in CHECK_ORDER else len(CHECK_ORDER)


def derive_keys(media_key: bytes, media_type: str) -> MediaKeys:
    """Expand a message's mediaKey into the keys for its media type (unknown type: ValueError)."""
    info = HKDF_INFO.get(media_type.lower() if isinstance(media_type, str) else media_type)
    if info is None:
        raise ValueError(f"no WhatsApp media keys for media type {media_type!r}")
    if len(media_key) != MEDIA_KEY_SIZE:
        raise ValueError(f"a mediaKey is {MEDIA_KEY_SIZE} bytes, this one is {len(media_key)}")
    expanded = HKDF(algorithm=hashes.SHA256(), length=EXPANDED_KEY_SIZE, salt=None, info=info).derive(
        bytes(media_key))
    return MediaKeys(iv=expanded[0:16], cipher_key=expanded[16:48], mac_key=expanded[48:80],
                     ref_key=expanded[80:112])


def decode_digest(text: Union[str, bytes, None]) -> Optional[bytes]:
    """A 32-byte SHA-256 digest from hex, base64 or base64url text; None if it is none of these.

    WhatsApp payloads carry base64, Meta's media API hex, some providers base64url without
    padding: accepting all of them here saves every caller from guessing.
    """
    if text is None:
        return None
    if isinstance(text, (bytes, bytearray)):
        if len(text) == DIGEST_SIZE:
            return bytes(text)
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(text, str):
        return None
    text = "".join(text.split())
    if len(text) == 2 * DIGEST_SIZE:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    candidate = text.rstrip("=").replace("-", "+").replace("_", "/")
    candidate += "=" * (-len(candidate) % 4)
    try:
        digest = base64.b64decode(candidate, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == DIGEST_SIZE else None


def _expected_digest(value: Union[bytes, str, None], name: str, problems: dict[str, str]) -> Optional[bytes]:
    """The expected digest as 32 bytes; an unusable one makes its check fail rather than vanish."""
    if value is None:
        return None
    digest = decode_digest(value)
    if digest is None:
        problems[name] = f"{name} cannot be checked: the expected value is not a SHA-256 digest"
    return digest


def _write_all(sink: BinaryIO, data: memoryview) -> None:
    """Write all of ``data``: a raw (unbuffered) file may take only part of it."""
    written = sink.write(data)
    while written is not None and written < len(data):
        data = data[written:]
        written = sink.write(data)


class _EncryptedHashes:
    """fileEncSha256 over the whole encrypted stream and the HMAC over all but its last 10 bytes.

    Which bytes are the MAC is only known at the end, so the last 10 bytes seen are always held
    back from the HMAC. Used by one thread at a time: the caller's, or the side thread's once it
    has been handed over.
    """

    def __init__(self, keys: MediaKeys) -> None:
        self.enc = hashlib.sha256()
        self.mac = hmac.new(keys.mac_key, keys.iv, hashlib.sha256)
        self.tail = b""

    def update(self, chunk: bytes) -> None:
        self.enc.update(chunk)
        size = len(chunk)
        if size >= MAC_SIZE:
            if self.tail:
                self.mac.update(self.tail)
            view = memoryview(chunk)
            self.mac.update(view[:size - MAC_SIZE])
            self.tail = bytes(view[size - MAC_SIZE:])
        else:
            joined = self.tail + chunk
            self.mac.update(joined[:-MAC_SIZE])
            self.tail = joined[-MAC_SIZE:]


class _Worker:
    """The side thread: applies ``update`` to each queued chunk, in order, until told to stop.

    It holds no reference to the decryptor, so an abandoned decryptor can still be collected
    (and its ``__del__`` stops the thread). It keeps draining the queue after an error or an
    abort so that a producer blocked on a full queue is always released.
    """

    def __init__(self, hashes: _EncryptedHashes) -> None:
        self.hashes = hashes
        self.queue: queue.Queue[Optional[bytes]] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.aborted = False
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="media-hash", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        hashes, chunks = self.hashes, self.queue
        while True:
            chunk = chunks.get()
            if chunk is None:
                return
            if self.aborted or self.error is not None:
                continue
            try:
                hashes.update(chunk)
            except BaseException as exc:  # reported by stop(); the thread must keep draining
                self.error = exc

    def put(self, chunk: bytes) -> None:
        self.queue.put(chunk)

    def stop(self, abort: bool) -> None:
        if abort:
            self.aborted = True
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()


class MediaDecryptor:
    """Decrypt a WhatsApp CDN download chunk by chunk into ``sink`` and verify it at the end.

    ``sink`` is a binary file opened for writing that the caller owns: it gets the plaintext as
    it is decrypted (except the last block, written by :meth:`finish`); the caller keeps it
    (renames it into place) only if :meth:`finish` returns, and deletes it otherwise. Use it as
    a context manager, or call :meth:`close`, so that the side thread is stopped when the
    download is abandoned half-way.

    Chunks handed to :meth:`feed` may be read by the side thread after ``feed`` returns, so
    mutable ones (bytearray, memoryview) are copied first; ``bytes`` are used as they are.
    """

    def __init__(self, keys: MediaKeys, sink: BinaryIO, *, file_enc_sha256: Optional[bytes] = None,
                 file_sha256: Optional[bytes] = None, file_length: Optional[int] = None) -> None:
        self._sink = sink
        self._problems: dict[str, str] = {}
        self._file_enc_sha256 = _expected_digest(file_enc_sha256, "file_enc_sha256", self._problems)
        self._file_sha256 = _expected_digest(file_sha256, "file_sha256", self._problems)
        self._file_length = file_length
        self._decryptor = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).decryptor()
        self._hashes = _EncryptedHashes(keys)
        self._worker: Optional[_Worker] = None
        self._plain = hashlib.sha256()
        self._out = bytearray(DECRYPT_SLICE + BLOCK)
        self._out_view = memoryview(self._out)
        self._held = b""
        self._size = 0
        self._enc_size = 0
        self._done = False

    def __enter__(self) -> "MediaDecryptor":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None and worker.thread.is_alive():
            log.warning("a media decryptor was dropped without finish() or close(); stopping its hash thread")
            worker.stop(abort=True)

    def close(self) -> None:
        """Stop the side thread, if any, without verifying; further feeding is an error."""
        self._done = True
        if self._worker is not None:
            self._worker.stop(abort=True)

    def feed(self, chunk: Bytes) -> None:
        """Take the next piece of the encrypted stream, of any size."""
        if self._done:
            raise RuntimeError("this decryptor is finished or closed")
        if not chunk:
            return
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        try:
            self._enc_size += len(chunk)
            if self._worker is not None:
                self._worker.put(chunk)
            elif self._enc_size > INLINE_LIMIT:
                self._worker = _Worker(self._hashes)
                self._worker.put(chunk)
            else:
                self._hashes.update(chunk)
            self._decrypt_ready(chunk)
        except BaseException:
            # half-fed (e.g. the disk is full): the state no longer matches the stream, so no
            # later feed() or finish() may pretend otherwise
            self.close()
            raise

    def _decrypt_ready(self, chunk: bytes) -> None:
        """Decrypt every whole block of ``held + chunk`` except the last HOLD_BACK bytes."""
        held = self._held
        ready = (len(held) + len(chunk) - HOLD_BACK) // BLOCK * BLOCK
        if ready <= 0:
            self._held = held + chunk
            return
        if ready <= len(held):
            # only with tiny chunks: everything involved is a few dozen bytes
            self._decrypt(memoryview(held)[:ready])
            self._held = held[ready:] + chunk
            return
        view = memoryview(chunk)
        start = 0
        if held:
            # complete the held bytes to whole blocks with the chunk's first few bytes
            start = -len(held) % BLOCK
            self._decrypt(memoryview(held + chunk[:start]))
        end = ready - len(held)
        while start < end:
            stop = min(end, start + DECRYPT_SLICE)
            self._decrypt(view[start:stop])
            start = stop
        self._held = bytes(view[end:])

    def _decrypt(self, data: memoryview) -> None:
        count = self._decryptor.update_into(data, self._out)
        plain = self._out_view[:count]
        self._plain.update(plain)
        _write_all(self._sink, plain)
        self._size += count

    def finish(self) -> DecryptResult:
        """Write the last block and check everything; VerificationError names what failed."""
        if self._done:
            raise RuntimeError("this decryptor is finished or closed")
        self._done = True
        if self._worker is not None:
            self._worker.stop(abort=False)
            if self._worker.error is not None:
                raise self._worker.error
        total = self._enc_size
        if total < HOLD_BACK or (total - MAC_SIZE) % BLOCK:
            shape = ("too short for one AES block plus a 10-byte MAC" if total < HOLD_BACK
                     else "not whole AES blocks plus a 10-byte MAC")
            raise VerificationError(["length"], {"length": f"wrong length: {total} bytes is {shape}"})

        held = self._held
        received_mac = held[-MAC_SIZE:]
        last = self._decryptor.update(held[:-MAC_SIZE]) + self._decryptor.finalize()
        pad = last[-1]
        padding_ok = 1 <= pad <= BLOCK and last[-pad:] == bytes([pad]) * pad
        body = memoryview(last[:-pad] if padding_ok else last)
        self._plain.update(body)
        _write_all(self._sink, body)
        self._size += len(body)

        failed: list[str] = list(self._problems)
        details = dict(self._problems)
        if not hmac.compare_digest(self._hashes.mac.digest()[:MAC_SIZE], received_mac):
            failed.append("mac")
        enc_digest = self._hashes.enc.digest()
        if self._file_enc_sha256 is not None and not hmac.compare_digest(enc_digest, self._file_enc_sha256):
            failed.append("file_enc_sha256")
        if not padding_ok:
            failed.append("padding")
        plain_digest = self._plain.digest()
        if self._file_sha256 is not None and not hmac.compare_digest(plain_digest, self._file_sha256):
            failed.append("file_sha256")
        if self._file_length is not None:
            if not padding_ok:
                failed.append("file_length")
                details.setdefault("file_length", "file_length unknown: the padding is invalid")
            elif self._size != self._file_length:
                failed.append("file_length")
                details.setdefault("file_length", f"file_length mismatch: decrypted {self._size} bytes, "
                                                  f"the message says {self._file_length}")
        if failed:
            raise VerificationError(failed, details)
        return DecryptResult(size=self._size, sha256=plain_digest.hex(), enc_size=total,
                             enc_sha256=enc_digest.hex())


class PlainVerifier:
    """The :class:`MediaDecryptor` interface for bytes that arrive already decrypted.

    Checks ``file_sha256`` (WhatsApp's, usually base64) and ``sha256_hex`` (Meta's, hex; base64
    is accepted too) against the SHA-256 of the bytes, and ``file_length`` against their count.
    An expected digest that cannot be decoded fails its check rather than being skipped.
    """

    def __init__(self, sink: BinaryIO, *, file_sha256: Optional[bytes] = None, sha256_hex: Optional[str] = None,
                 file_length: Optional[int] = None) -> None:
        self._sink = sink
        self._problems: dict[str, str] = {}
        self._file_sha256 = _expected_digest(file_sha256, "file_sha256", self._problems)
        self._sha256 = _expected_digest(sha256_hex, "sha256", self._problems)
        self._file_length = file_length
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False

    def __enter__(self) -> "PlainVerifier":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._done = True

    def feed(self, chunk: Bytes) -> None:
        if self._done:
            raise RuntimeError("this verifier is finished or closed")
        if not chunk:
            return
        view = memoryview(chunk)
        self._hash.update(view)
        _write_all(self._sink, view)
        self._size += view.nbytes

    def finish(self) -> DecryptResult:
        if self._done:
            raise RuntimeError("this verifier is finished or closed")
        self._done = True
        digest = self._hash.digest()
        failed: list[str] = list(self._problems)
        details = dict(self._problems)
        if self._file_sha256 is not None and not hmac.compare_digest(digest, self._file_sha256):
            failed.append("file_sha256")
        if self._sha256 is not None and not hmac.compare_digest(digest, self._sha256):
            failed.append("sha256")
        if self._file_length is not None and self._size != self._file_length:
            failed.append("file_length")
            details.setdefault("file_length", f"file_length mismatch: got {self._size} bytes, "
                                              f"expected {self._file_length}")
        if failed:
            raise VerificationError(failed, details)
        hex_digest = digest.hex()
        return DecryptResult(size=self._size, sha256=hex_digest, enc_size=self._size, enc_sha256=hex_digest)
