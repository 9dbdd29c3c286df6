"""An independent check of Signet's SLH-DSA output with the `slhdsa` package from PyPI (a FIPS 205
implementation of its own; pyca/cryptography has no SLH-DSA): signatures against SPKI PEM
public keys (whose RFC 9909 OID the package reads itself), pure and pre-hash (HashSLH-DSA with
SHA-256 or SHA-512, FIPS 205 §10.2), and AKP JWKs against those keys. Reads {"checks": [...]}
as JSON on stdin; prints one line per check, "ok" or "FAIL <why>".

`slhdsa_check.py sign sha2_128s|sha2_128f` goes the other way: it makes a key pair and signs
with it (pure SLH-DSA, randomized, with and without a context, and HashSLH-DSA with SHA-256
and SHA-512), and prints the public key and the cases as JSON — signatures made outside
Signet, for Signet's own verifier to judge.
Used by tests/pqc.rs."""

import base64
import hashlib
import json
import os
import sys
import tempfile

import slhdsa
from slhdsa import KeyPair, PublicKey

# The algorithm names Signet uses, and the parameter sets (RFC 9909 OID arcs) they are.
ALGORITHMS = {"SLH-DSA-SHA2-128s": 20, "SLH-DSA-SHA2-128f": 21}

# The pre-hash functions, by Signet's name: NIST's OID arc under 2.16.840.1.101.3.4.2 (the
# package's prefix holds the DER up to it) and hashlib's function. FIPS 205's PH_M is the OID's
# DER followed by the digest, which the package's `prehash` argument must return.
HASHES = {"SHA256": (0x01, hashlib.sha256), "SHA512": (0x03, hashlib.sha512)}


def prehash(name):
    arc, function = HASHES[name]
    return lambda data: slhdsa.slhdsa.HASH_ALGORITHM_OID_PREFIX + bytes([arc]) + function(data).digest()


def b64(text):
    return base64.b64decode(text)


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_pem(pem):
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        return PublicKey.from_pkcs(path)
    finally:
        os.unlink(path)


def check(c):
    key = load_pem(c["pem"])
    arc = key.par.objectid[-1]
    if c["kind"] == "sig":
        if arc != ALGORITHMS[c["alg"]]:
            return f"the PEM names parameter set {arc}, not {c['alg']}"
        ctx = b64(c["ctx"]) if c.get("ctx") is not None else b""
        if c.get("hash"):
            got = key.verify_hash(b64(c["msg"]), b64(c["sig"]), ctx, prehash(c["hash"]))
        else:
            got = key.verify_pure(b64(c["msg"]), b64(c["sig"]), ctx)
        return None if got == c["expect"] else f"verified {got}, expected {c['expect']}"
    if c["kind"] == "jwk":
        jwk = c["jwk"]
        if jwk.get("kty") != "AKP" or ALGORITHMS.get(jwk.get("alg")) != arc:
            return f"kty {jwk.get('kty')!r} alg {jwk.get('alg')!r} for parameter set {arc}"
        if b64url(jwk["pub"]) != key.digest():
            return "the JWK and the PEM are different keys"
        return None
    return f"unknown check {c['kind']!r}"


def sign(name):
    par = getattr(slhdsa, name)
    pair = KeyPair.gen(par)
    msg, other, ctx = b"signed outside Signet", b"another message", b"signet/kat"
    plain = pair.sec.sign_pure(msg, True)
    with_ctx = pair.sec.sign_pure(msg, True, ctx)
    spoiled = bytearray(plain)
    spoiled[len(spoiled) // 2] ^= 1
    by_sha256 = pair.sec.sign_hash(msg, True, ctx, prehash("SHA256"))
    by_sha512 = pair.sec.sign_hash(msg, True, b"", prehash("SHA512"))
    hx = bytes.hex
    cases = [
        {"what": "a signature", "msg": hx(msg), "ctx": "", "sig": hx(plain), "valid": True},
        {"what": "with a context", "msg": hx(msg), "ctx": hx(ctx), "sig": hx(with_ctx),
         "valid": True},
        {"what": "a context signature without it", "msg": hx(msg), "ctx": "",
         "sig": hx(with_ctx), "valid": False},
        {"what": "another message", "msg": hx(other), "ctx": "", "sig": hx(plain),
         "valid": False},
        {"what": "one bit changed", "msg": hx(msg), "ctx": "", "sig": hx(bytes(spoiled)),
         "valid": False},
        {"what": "cut short", "msg": hx(msg), "ctx": "", "sig": hx(plain[:-1]),
         "valid": False},
        {"what": "pre-hash SHA-256 with a context", "hash": "SHA256", "msg": hx(msg),
         "ctx": hx(ctx), "sig": hx(by_sha256), "valid": True},
        {"what": "pre-hash SHA-512", "hash": "SHA512", "msg": hx(msg), "ctx": "",
         "sig": hx(by_sha512), "valid": True},
        {"what": "pre-hash SHA-256 without its context", "hash": "SHA256", "msg": hx(msg),
         "ctx": "", "sig": hx(by_sha256), "valid": False},
        {"what": "pre-hash SHA-512 as SHA-256", "hash": "SHA256", "msg": hx(msg), "ctx": "",
         "sig": hx(by_sha512), "valid": False},
        {"what": "pre-hash SHA-512 over another message", "hash": "SHA512", "msg": hx(other),
         "ctx": "", "sig": hx(by_sha512), "valid": False},
        {"what": "pre-hash SHA-512 as a pure signature", "msg": hx(msg), "ctx": "",
         "sig": hx(by_sha512), "valid": False},
        {"what": "a pure signature as pre-hash SHA-256", "hash": "SHA256", "msg": hx(msg),
         "ctx": "", "sig": hx(plain), "valid": False},
    ]
    print(json.dumps({"public": hx(pair.pub.digest()), "cases": cases}))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "sign":
        sign(sys.argv[2])
        return
    for c in json.load(sys.stdin)["checks"]:
        try:
            why = check(c)
        except Exception as e:  # a parse failure is a failed check, with its reason
            why = f"{type(e).__name__}: {e}"
        print("ok" if why is None else f"FAIL {why}")


if __name__ == "__main__":
    main()
