"""TC3-HMAC-SHA256 request signing (Tencent Cloud API 3.0), as pure functions.

Used by the client to sign and by the emulator to verify. See docs/iai.md for the steps; tests/test_signing.py
reproduces the published test vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

ALGORITHM = "TC3-HMAC-SHA256"
SERVICE = "iai"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc_date(timestamp: int) -> str:
    """The UTC date of a unix timestamp (local time would break every night in UTC+8)."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")


def canonical_headers(headers: Mapping[str, str], signed: list[str]) -> tuple[str, str]:
    """(CanonicalHeaders, SignedHeaders): names and values lower-cased and trimmed, sorted by name."""
    lowered = {name.lower().strip(): value for name, value in headers.items()}
    names = sorted(name.lower().strip() for name in signed)
    lines = "".join(f"{name}:{lowered[name].strip().lower()}\n" for name in names)
    return lines, ";".join(names)


def canonical_request(
    headers: Mapping[str, str], signed: list[str], body: bytes, method: str = "POST", uri: str = "/", query: str = ""
) -> str:
    lines, signed_names = canonical_headers(headers, signed)
    return f"{method}\n{uri}\n{query}\n{lines}\n{signed_names}\n{sha256_hex(body)}"


def string_to_sign(timestamp: int, service: str, canonical: str) -> str:
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{sha256_hex(canonical.encode('utf-8'))}"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC("TC3" + SecretKey, date), service), "tc3_request")."""
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k_service = _hmac(k_date, service)
    return _hmac(k_service, "tc3_request")


def sign_tc3(secret_key: str, date: str, service: str, to_sign: str) -> str:
    """Hex signature of `to_sign` (same contract as the SDK's `Sign.sign_tc3`)."""
    return hmac.new(signing_key(secret_key, date, service), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(
    secret_id: str, secret_key: str, service: str, timestamp: int, *, headers: Mapping[str, str], signed: list[str], body: bytes
) -> str:
    """The `Authorization` header value for a POST / with these headers and body."""
    canonical = canonical_request(headers, signed, body)
    signature = sign_tc3(secret_key, utc_date(timestamp), service, string_to_sign(timestamp, service, canonical))
    _, signed_names = canonical_headers(headers, signed)
    return (
        f"{ALGORITHM} Credential={secret_id}/{utc_date(timestamp)}/{service}/tc3_request, "
        f"SignedHeaders={signed_names}, Signature={signature}"
    )


_AUTH_RE = re.compile(
    r"^TC3-HMAC-SHA256\s+Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)/tc3_request,\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9\-;]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class ParsedAuthorization:
    secret_id: str
    date: str
    service: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split an Authorization header; None when it is not a well-formed TC3 header."""
    match = _AUTH_RE.match(value.strip())
    if not match:
        return None
    return ParsedAuthorization(
        match["id"], match["date"], match["service"], match["signed"].split(";"), match["sig"]
    )


def verify(
    parsed: ParsedAuthorization, secret_key: str, timestamp: int, headers: Mapping[str, str], body: bytes
) -> bool:
    """Recompute the signature from what was received and compare in constant time."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if any(name not in lowered for name in parsed.signed_headers) or parsed.date != utc_date(timestamp):
        return False
    canonical = canonical_request(lowered, parsed.signed_headers, body)
    expected = sign_tc3(secret_key, parsed.date, parsed.service, string_to_sign(timestamp, parsed.service, canonical))
    return hmac.compare_digest(expected, parsed.signature)
