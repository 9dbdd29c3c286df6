"""Validates a Signet access token as an RFC 9068 resource server would, with PyJWT.

usage: rfc9068.py JWKS_FILE TOKEN ISSUER AUDIENCE
Prints the claims as JSON; exits 1 with PyJWT's reason when the token is not acceptable.
"""
import json
import sys

import jwt

jwks_file, token, issuer, audience = sys.argv[1:5]
with open(jwks_file) as f:
    keys = jwt.PyJWKSet.from_dict(json.load(f))
try:
    header = jwt.get_unverified_header(token)
    # RFC 9068 section 4: the typ header must say this is an access token.
    if header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
        raise jwt.InvalidTokenError(f"typ is {header.get('typ')!r}, not at+jwt")
    key = keys[header["kid"]]
    claims = jwt.decode(
        token,
        key=key,
        algorithms=[header["alg"]],
        audience=audience,
        issuer=issuer,
        # RFC 9068 section 2.2: the claims an access token must carry.
        options={"require": ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]},
    )
except Exception as e:  # noqa: BLE001 - any refusal is the answer
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
print(json.dumps(claims))
