"""Witnessed chain heads: the ledger's and the audit trail's heads, signed, kept outside the database.

A hash chain proves that history was not rewritten only to someone holding an earlier head: whoever
can write the database can also recompute the chain. So the scheduled verify job signs the heads
(every facility's ledger chain, and the audit trail's latest seal) with an Ed25519 key that is kept
outside the database (a file only the job's account reads), writes them to a folder outside the
database, and sends them to the national auditors. `dawa ledger verify --against FILE` checks the
signature with the public key and proves that the ledger since has not been rewritten; a chain
recomputed after an edit no longer passes through the witnessed hash.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from stock import chain
from web import audit_chain

FORMAT = "dawa-witnessed-heads/1"


def generate_key(private_path: Path) -> Path:
    """Write a new Ed25519 private key (PEM, readable by its owner only) and its public key beside
    it (``.pub``); returns the public key's path. Refuses to overwrite a key."""
    private_path = Path(private_path)
    if private_path.exists():
        raise FileExistsError(f"{private_path} exists: a witness key is never overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path = private_path.with_name(private_path.name + ".pub")
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return public_path


def load_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def _payload(data: dict) -> bytes:
    body = {k: v for k, v in data.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed_heads(session: Session, key: Ed25519PrivateKey, now: datetime) -> dict:
    """The heads as of now, signed: {format, signed_at, heads, audit, public_key, signature}."""
    seal = audit_chain.head(session)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    data = {"format": FORMAT, "signed_at": now.isoformat(), "exported_at": now.isoformat(),
            "heads": chain.heads(session),
            "audit": {"through_id": seal.through_id, "records": seal.records, "hash": seal.head_hash} if seal else None,
            "public_key": base64.b64encode(public).decode("ascii")}
    data["signature"] = base64.b64encode(key.sign(_payload(data))).decode("ascii")
    return data


def write(data: dict, folder: Path) -> Path:
    """Write signed heads to ``folder`` (made if missing) under a name of their time; never overwrites."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = data["signed_at"].replace(":", "").replace("-", "").split(".")[0].split("+")[0]
    path = folder / f"heads-{stamp}.json"
    with path.open("x", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


def check(data: dict, public_key: Ed25519PublicKey) -> None:
    """Raise ValueError unless ``data`` was signed by the key ``public_key`` is the half of."""
    if data.get("format") != FORMAT or "signature" not in data:
        raise ValueError("not a signed heads file (no signature)")
    try:
        public_key.verify(base64.b64decode(data["signature"]), _payload(data))
    except (InvalidSignature, ValueError) as exc:
        raise ValueError("the signature does not match: the heads file was altered or signed by another key") \
            from exc


def read_signed(path: Path, public_key_path: Path) -> dict:
    """A signed heads file, its signature checked; ValueError naming the file and the problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        check(data, load_public(public_key_path))
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return data


__all__ = ["generate_key", "load_private", "load_public", "signed_heads", "write", "check", "read_signed", "FORMAT"]
