"""An independent check of Signet's ML-DSA output with pyca/cryptography (>= 50; its wheels carry
an OpenSSL with ML-DSA): signatures against SPKI PEM public keys, JWKs against those keys, and
JWTs against a JWKS. Reads {"checks": [...]} as JSON on stdin; prints one line per check,
"ok" or "FAIL <why>". Used by tests/pqc.rs."""

import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa

CLASSES = {
    "ML-DSA-44": mldsa.MLDSA44PublicKey,
    "ML-DSA-65": mldsa.MLDSA65PublicKey,
    "ML-DSA-87": mldsa.MLDSA87PublicKey,
}


def b64(text):
    return base64.b64decode(text)


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verifies(key, sig, msg, ctx=None):
    try:
        key.verify(sig, msg, ctx)
        return True
    except InvalidSignature:
        return False


def check(c):
    kind = c["kind"]
    if kind == "sig":
        key = serialization.load_pem_public_key(c["pem"].encode())
        expected_class = CLASSES[c["alg"]]
        if not isinstance(key, expected_class):
            return f"the PEM is a {type(key).__name__}, not {c['alg']}"
        ctx = b64(c["ctx"]) if c.get("ctx") is not None else None
        got = verifies(key, b64(c["sig"]), b64(c["msg"]), ctx)
        return None if got == c["expect"] else f"verified {got}, expected {c['expect']}"
    if kind == "jwk":
        jwk = c["jwk"]
        if jwk.get("kty") != "AKP":
            return f"kty {jwk.get('kty')!r}"
        key = CLASSES[jwk["alg"]].from_public_bytes(b64url(jwk["pub"]))
        pem_key = serialization.load_pem_public_key(c["pem"].encode())
        if key.public_bytes_raw() != pem_key.public_bytes_raw():
            return "the JWK and the PEM are different keys"
        return None
    if kind == "jwt":
        header_b64, payload_b64, sig_b64 = c["token"].split(".")
        header = json.loads(b64url(header_b64))
        keys = [k for k in c["jwks"]["keys"] if k.get("kid") == header.get("kid")]
        if len(keys) != 1:
            return f"kid {header.get('kid')!r} is in the JWKS {len(keys)} times"
        jwk = keys[0]
        if jwk.get("kty") != "AKP" or jwk.get("alg") != header.get("alg"):
            return f"header alg {header.get('alg')!r} against JWK {jwk.get('kty')}/{jwk.get('alg')}"
        key = CLASSES[jwk["alg"]].from_public_bytes(b64url(jwk["pub"]))
        signing_input = f"{header_b64}.{payload_b64}".encode()
        if not verifies(key, b64url(sig_b64), signing_input):
            return "the JWS signature does not verify"
        claims = json.loads(b64url(payload_b64))
        if claims.get("sub") != c["sub"]:
            return f"sub {claims.get('sub')!r}"
        return None
    return f"unknown check {kind!r}"


def main():
    for c in json.load(sys.stdin)["checks"]:
        try:
            why = check(c)
        except Exception as e:  # a parse failure is a failed check, reported as such
            why = f"{type(e).__name__}: {e}"
        print("ok" if why is None else f"FAIL {why}")


if __name__ == "__main__":
    main()
