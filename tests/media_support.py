"""Shared by the media tests: real encrypted vectors, payloads that carry them, waiting on rows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from storage.decrypt import derive_keys
from tests.helpers import load_sample

VECTORS = Path(__file__).parent / "media_vectors"
FINAL_STATES = ("done", "failed", "expired")

# media type -> (proto node, mimetype the payload announces)
PROTO = {
    "image": ("imageMessage", "image/png"),
    "video": ("videoMessage", "video/mp4"),
    "audio": ("audioMessage", "audio/ogg; codecs=opus"),
    "document": ("documentMessage", "application/pdf"),
    "sticker": ("stickerMessage", "image/webp"),
}


def vector(name: str) -> tuple[dict, bytes, bytes]:
    """(descriptor, encrypted bytes as the CDN serves them, expected plaintext)."""
    meta = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    return meta, (VECTORS / meta["encFile"]).read_bytes(), (VECTORS / meta["plaintextFile"]).read_bytes()


def encrypt(plaintext: bytes, media_key: bytes, media_type: str) -> bytes:
    """WhatsApp's scheme, written independently of the module under test."""
    keys = derive_keys(media_key, media_type)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(keys.mac_key, keys.iv + ciphertext, hashlib.sha256).digest()[:10]
    return ciphertext + mac


def made_vector(size: int, media_type: str = "video") -> tuple[dict, bytes, bytes]:
    """A fresh random media file encrypted the WhatsApp way, shaped like vector()."""
    plaintext, media_key = os.urandom(size), os.urandom(32)
    encrypted = encrypt(plaintext, media_key, media_type)
    meta = {
        "mediaType": media_type,
        "mediaKey": base64.b64encode(media_key).decode(),
        "fileSha256": base64.b64encode(hashlib.sha256(plaintext).digest()).decode(),
        "fileEncSha256": base64.b64encode(hashlib.sha256(encrypted).digest()).decode(),
        "fileLength": size,
    }
    return meta, encrypted, plaintext


def media_node(meta: dict, direct_path: str, **extra) -> dict:
    node_name, mimetype = PROTO[meta["mediaType"]]
    node = {
        "url": "https://mmg.whatsapp.net" + direct_path,
        "mimetype": mimetype,
        "fileSha256": meta["fileSha256"],
        "fileLength": str(meta["fileLength"]),
        "mediaKey": meta["mediaKey"],
        "fileEncSha256": meta["fileEncSha256"],
        "directPath": direct_path,
        "mediaKeyTimestamp": "1748890765",
    }
    if meta["mediaType"] == "document":
        node["fileName"] = "report.pdf"
    if meta["mediaType"] == "audio":
        node.update(ptt=True, seconds=3)
    node.update(extra)
    return node


def wapi_payload(meta: dict, message_id: str, direct_path: str, **extra) -> dict:
    """The real W-API image webhook, carrying the vector instead of its own media."""
    payload = load_sample("wapi/webhookReceived_image_real.json")
    payload["messageId"] = message_id
    payload["msgContent"] = {PROTO[meta["mediaType"]][0]: media_node(meta, direct_path, **extra)}
    return payload


def evolution_payload(meta: dict, message_id: str, direct_path: str, **extra) -> dict:
    """The real Evolution v1 image webhook, carrying the vector."""
    payload = load_sample("evolution/v1_messages.upsert_image_no_base64.json")
    payload["data"]["key"]["id"] = message_id
    payload["data"]["message"] = {PROTO[meta["mediaType"]][0]: media_node(meta, direct_path, **extra)}
    return payload


def post(client, path: str, payload: dict):
    response = client.post(path, data=json.dumps(payload), content_type="application/json")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def media_of(client, provider_message_id: str) -> dict:
    for item in client.get("/api/messages?limit=500").get_json()["items"]:
        if item["provider_message_id"] == provider_message_id:
            assert item["media"] is not None, item
            return item["media"]
    raise AssertionError(f"no message {provider_message_id}")


def wait_for_media(client, media_id: int, states=FINAL_STATES, timeout: float = 20.0) -> dict:
    """Poll the row until it reaches one of ``states`` (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        data = client.get(f"/api/media/{media_id}").get_json()
        if data["state"] in states:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"media {media_id} is still {data['state']} after {timeout} s: {data}")
        time.sleep(0.02)


def files_under(folder: Path) -> list[Path]:
    """Every file in the media folder, temporary ones included (not the folder's database marker)."""
    from media import MEDIA_DIR_MARKER

    if not folder.exists():
        return []
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.name != MEDIA_DIR_MARKER)
