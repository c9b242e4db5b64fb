"""Sign-In with Ethereum (EIP-4361) challenges and bearer sessions."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, insert, select, update

from gpudepin import API_VERSION
from gpudepin.coordinator import db
from gpudepin.core.errors import Unauthorized
from gpudepin.identity import normalize_address, recover_signer

CHALLENGE_TTL_S = 300


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def siwe_message(domain: str, uri: str, address: str, nonce: str, now: float) -> str:
    """An EIP-4361 message; the address is written as given (wallets show it)."""
    return (
        f"{domain} wants you to sign in with your Ethereum account:\n"
        f"{address}\n\n"
        f"Sign in to gpudepin (API v{API_VERSION}).\n\n"
        f"URI: {uri}\n"
        f"Version: 1\n"
        f"Chain ID: 31337\n"
        f"Nonce: {nonce}\n"
        f"Issued At: {_iso(now)}\n"
        f"Expiration Time: {_iso(now + CHALLENGE_TTL_S)}"
    )


def create_challenge(conn: Connection, address: str, domain: str, uri: str, now: float) -> str:
    addr = normalize_address(address)
    nonce = secrets.token_hex(16)
    message = siwe_message(domain, uri, addr, nonce, now)
    conn.execute(delete(db.auth_nonces).where(db.auth_nonces.c.expires_at < now))
    conn.execute(
        insert(db.auth_nonces).values(
            nonce=nonce, address=addr, message=message, expires_at=now + CHALLENGE_TTL_S, used=False
        )
    )
    return message


def _nonce_of(message: str) -> str:
    for line in message.splitlines():
        if line.startswith("Nonce: "):
            return line.removeprefix("Nonce: ").strip()
    raise Unauthorized("the sign-in message has no nonce", hint="Ask for a new challenge.")


def login(
    conn: Connection, message: str, signature: str, now: float, ttl_s: int
) -> tuple[str, str, float]:
    """Check a signed challenge once; return (token, address, expires_at)."""
    nonce = _nonce_of(message)
    row = conn.execute(select(db.auth_nonces).where(db.auth_nonces.c.nonce == nonce)).first()
    if row is None or row.used or row.message != message:
        raise Unauthorized("unknown or already used sign-in challenge", hint="Ask for a new one.")
    if row.expires_at < now:
        raise Unauthorized("the sign-in challenge expired", hint="Ask for a new one.")
    if recover_signer(message, signature) != row.address:
        raise Unauthorized("the challenge was signed by another key")
    conn.execute(update(db.auth_nonces).where(db.auth_nonces.c.nonce == nonce).values(used=True))
    token = secrets.token_urlsafe(32)
    expires = now + ttl_s
    conn.execute(
        insert(db.sessions).values(token_hash=_hash(token), address=row.address, expires_at=expires)
    )
    return token, row.address, expires


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session(conn: Connection, token: str, now: float) -> tuple[str, float]:
    """The address behind a bearer token and when its session expires, or Unauthorized."""
    row = conn.execute(select(db.sessions).where(db.sessions.c.token_hash == _hash(token))).first()
    if row is None:
        raise Unauthorized("unknown session token")
    if row.expires_at < now:
        raise Unauthorized("your session expired", hint="Log in again; the CLI does it for you.")
    return str(row.address), float(row.expires_at)
