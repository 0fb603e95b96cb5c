"""TC3-HMAC-SHA256: the published vectors exactly, and agreement with the official SDK on random inputs."""

from __future__ import annotations

import random
import string

import pytest

from agent.iai.signing import (
    authorization,
    canonical_request,
    parse_authorization,
    sha256_hex,
    sign_tc3,
    signing_key,
    string_to_sign,
    utc_date,
    verify,
)

BODY = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
TIMESTAMP = 1551113065
HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Host": "cvm.tencentcloudapi.com",
    "X-TC-Action": "DescribeInstances",
}


def test_shared_inputs() -> None:
    assert len(BODY) == 86
    assert sha256_hex(BODY) == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    assert utc_date(TIMESTAMP) == "2019-02-25"


@pytest.mark.parametrize(
    ("secret_key", "signature"),
    [
        ("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"),  # A1
        ("Gu5t9xGARNpq86cd98joQYCN3*******", "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"),  # A2
    ],
    ids=["A1", "A2"],
)
def test_vector_a(secret_key: str, signature: str) -> None:
    canonical = canonical_request(HEADERS, ["content-type", "host"], BODY)
    assert sha256_hex(canonical.encode()) == "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    assert sign_tc3(secret_key, "2019-02-25", "cvm", string_to_sign(TIMESTAMP, "cvm", canonical)) == signature
    header = authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", secret_key, "cvm", TIMESTAMP, headers=HEADERS, signed=["content-type", "host"], body=BODY)
    assert header == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )


def test_vector_c_signs_the_action_header_lower_cased() -> None:
    secret_key = "*" * 32
    canonical = canonical_request(HEADERS, ["content-type", "host", "x-tc-action"], BODY)
    assert "x-tc-action:describeinstances\n" in canonical
    assert sha256_hex(canonical.encode()) == "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
    import hashlib
    import hmac

    k_date = hmac.new(b"TC3" + secret_key.encode(), b"2019-02-25", hashlib.sha256).digest()
    assert k_date.hex() == "da98fb70dcf6b112dc21038d1eeeb3a95c74b4dcb12c1131f864f6066bd02be0"
    k_service = hmac.new(k_date, b"cvm", hashlib.sha256).digest()
    assert k_service.hex() == "8d70cbefb03939f929db64d32dc2ba89b1095620119fe3e050e2b18c5bd2752f"
    assert signing_key(secret_key, "2019-02-25", "cvm").hex() == "b596b923aad85185e2d1f6659d2a062e0a86731226e021e61bfe06f7ed05f5af"
    assert sign_tc3(secret_key, "2019-02-25", "cvm", string_to_sign(TIMESTAMP, "cvm", canonical)) == (
        "10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
    )


def test_agrees_with_official_sdk_on_random_inputs() -> None:
    sdk_sign = pytest.importorskip("tencentcloud.common.sign").Sign.sign_tc3
    rng = random.Random(20261125)
    alphabet = string.ascii_letters + string.digits + "*+/=-_ "
    for _ in range(400):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 64)))
        ts = rng.randint(0, 2_000_000_000)
        service = rng.choice(["iai", "cvm", "cam", "x" * rng.randint(1, 12)])
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        headers = {"Content-Type": rng.choice(["application/json", "application/json; charset=utf-8"]), "Host": f"h{rng.randint(0, 99)}.example"}
        canonical = canonical_request(headers, ["content-type", "host"], body)
        to_sign = string_to_sign(ts, service, canonical)
        assert sign_tc3(key, utc_date(ts), service, to_sign) == sdk_sign(key, utc_date(ts), service, to_sign)


def test_verify_roundtrip_and_tampering() -> None:
    headers = {"Content-Type": "application/json", "Host": "127.0.0.1:8080", "X-TC-Action": "CreateFace"}
    signed = ["content-type", "host", "x-tc-action"]
    header = authorization("AKID1", "key", "iai", TIMESTAMP, headers=headers, signed=signed, body=b"{}")
    parsed = parse_authorization(header)
    assert parsed is not None and parsed.secret_id == "AKID1" and parsed.signed_headers == signed
    assert verify(parsed, "key", TIMESTAMP, headers, b"{}")
    assert not verify(parsed, "other", TIMESTAMP, headers, b"{}")
    assert not verify(parsed, "key", TIMESTAMP, headers, b'{"a":1}')
    assert not verify(parsed, "key", TIMESTAMP, {**headers, "Host": "evil:1"}, b"{}")
    assert not verify(parsed, "key", TIMESTAMP + 86400, headers, b"{}")  # date in scope no longer matches
    assert parse_authorization("Basic abc") is None
