"""An independent check of Signet's ML-DSA output with pyca/cryptography (>= 50; its wheels carry
an OpenSSL with ML-DSA): signatures against SPKI PEM public keys, JWKs against those keys, JWTs
against a JWKS, and certificates for ML-DSA keys through pyca's X.509 path validation. Reads
{"checks": [...]} as JSON on stdin; prints one line per check, "ok" or "FAIL <why>".
`mldsa_check.py csr ML-DSA-65 NAME [bad]` prints a CSR for a new ML-DSA key instead (its
signature spoiled with `bad`). Used by tests/pqc.rs."""

import base64
import datetime
import json
import sys

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store

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
        if jwk.get("alg") != header.get("alg"):
            return f"header alg {header.get('alg')!r} against JWK alg {jwk.get('alg')!r}"
        if jwk.get("kty") == "AKP":
            key = CLASSES[jwk["alg"]].from_public_bytes(b64url(jwk["pub"]))
            signing_input = f"{header_b64}.{payload_b64}".encode()
            if not verifies(key, b64url(sig_b64), signing_input):
                return "the JWS signature does not verify"
        else:
            # Classical keys: PyJWT, which checks the signature (not the claims here).
            import jwt

            jwt.api_jws.decode_complete(
                c["token"], key=jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]]
            )
        claims = json.loads(b64url(payload_b64))
        if claims.get("sub") != c["sub"]:
            return f"sub {claims.get('sub')!r}"
        return None
    if kind == "chain":
        leaf = x509.load_pem_x509_certificate(c["leaf"].encode())
        intermediate = x509.load_pem_x509_certificate(c["intermediate"].encode())
        root = x509.load_pem_x509_certificate(c["root"].encode())
        key = leaf.public_key()
        if not isinstance(key, CLASSES[c["alg"]]):
            return f"the certificate's key is a {type(key).__name__}, not {c['alg']}"
        csr = x509.load_pem_x509_csr(c["csr"].encode())
        if key.public_bytes_raw() != csr.public_key().public_bytes_raw():
            return "the certificate certifies another key than the CSR's"
        return validate_path(root, intermediate, leaf, c["dns"])
    if kind == "mlca":
        return ml_dsa_ca(c)
    return f"unknown check {kind!r}"


def validate_path(root, intermediate, leaf, dns):
    """pyca's path validation of root -> intermediate -> leaf for the server name `dns`."""
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(datetime.datetime.now(datetime.timezone.utc))
        .build_server_verifier(x509.DNSName(dns))
    )
    chain = verifier.verify(leaf, [intermediate])
    return None if len(chain) == 3 else f"a chain of {len(chain)}"


ML_DSA_OIDS = {
    "2.16.840.1.101.3.4.3.17": "ML-DSA-44",
    "2.16.840.1.101.3.4.3.18": "ML-DSA-65",
    "2.16.840.1.101.3.4.3.19": "ML-DSA-87",
}


def ml_dsa_ca(c):
    """An ML-DSA-87 root, an ML-DSA-65 intermediate, a leaf it issued, its CRL listing the leaf
    and the root's CRL: each signature named ML-DSA (RFC 9881) and checked with the issuer's
    key, then the path validated."""
    root = x509.load_pem_x509_certificate(c["root"].encode())
    intermediate = x509.load_pem_x509_certificate(c["intermediate"].encode())
    leaf = x509.load_pem_x509_certificate(c["leaf"].encode())
    crl = x509.load_pem_x509_crl(c["crl"].encode())
    arl = x509.load_pem_x509_crl(c["arl"].encode())
    signed = [
        ("the root", root, root, "ML-DSA-87", root.tbs_certificate_bytes),
        ("the intermediate", intermediate, root, "ML-DSA-87", intermediate.tbs_certificate_bytes),
        ("the leaf", leaf, intermediate, "ML-DSA-65", leaf.tbs_certificate_bytes),
        ("the CRL", crl, intermediate, "ML-DSA-65", crl.tbs_certlist_bytes),
        ("the root's CRL", arl, root, "ML-DSA-87", arl.tbs_certlist_bytes),
    ]
    for what, item, issuer, alg, tbs in signed:
        named = ML_DSA_OIDS.get(item.signature_algorithm_oid.dotted_string)
        if named != alg:
            return f"{what} is signed with {item.signature_algorithm_oid.dotted_string}, not {alg}"
        key = issuer.public_key()
        if not isinstance(key, CLASSES[alg]):
            return f"{what}'s issuer key is a {type(key).__name__}, not {alg}"
        if not verifies(key, item.signature, tbs):
            return f"{what}'s signature does not verify"
        if verifies(key, item.signature, tbs + b"x"):
            return f"{what}'s signature verifies other data"
    if intermediate.issuer != root.subject or leaf.issuer != intermediate.subject:
        return "the names do not chain"
    if crl.issuer != intermediate.subject or arl.issuer != root.subject:
        return "a CRL names another issuer"
    if crl.get_revoked_certificate_by_serial_number(int(c["serial"], 16)) is None:
        return "the CRL does not list the revoked leaf"
    if not isinstance(leaf.public_key(), mldsa.MLDSA44PublicKey):
        return f"the leaf's key is a {type(leaf.public_key()).__name__}"
    # And pyca's own path validation, root to leaf, for the server name.
    return validate_path(root, intermediate, leaf, c["dns"])


def csr(alg, name, bad, seed_to=None):
    key = {
        "ML-DSA-44": mldsa.MLDSA44PrivateKey,
        "ML-DSA-65": mldsa.MLDSA65PrivateKey,
        "ML-DSA-87": mldsa.MLDSA87PrivateKey,
    }[alg].generate()
    if seed_to:
        # The FIPS 204 seed (xi) of the key, for a client that signs with it elsewhere.
        with open(seed_to, "w") as f:
            f.write(key.private_bytes_raw().hex())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    )
    if not seed_to:
        # A server's name; a client's CSR (keycsr) asks for none.
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    request = builder.sign(key, None)
    der = bytearray(request.public_bytes(serialization.Encoding.DER))
    if bad:
        der[-40] ^= 1  # inside the signature, which ends the request
    print(base64.encodebytes(bytes(der)).decode().join(
        ["-----BEGIN CERTIFICATE REQUEST-----\n", "-----END CERTIFICATE REQUEST-----\n"]), end="")


def main():
    if sys.argv[1:2] == ["csr"]:
        csr(sys.argv[2], sys.argv[3], sys.argv[4:5] == ["bad"])
        return
    if sys.argv[1:2] == ["keycsr"]:
        # keycsr ALG NAME SEED_FILE: a CSR, and the key's seed written to SEED_FILE.
        csr(sys.argv[2], sys.argv[3], False, sys.argv[4])
        return
    for c in json.load(sys.stdin)["checks"]:
        try:
            why = check(c)
        except Exception as e:  # a parse failure is a failed check, reported as such
            why = f"{type(e).__name__}: {e}"
        print("ok" if why is None else f"FAIL {why}")


if __name__ == "__main__":
    main()
