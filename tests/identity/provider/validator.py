import json
import os

from jwcrypto import jwt
from oauth2_provider.oauth2_validators import OAuth2Validator


def claims_of(user) -> dict:
    with open(os.environ["OIDC_PROVIDER_CLAIMS"]) as stream:
        return json.load(stream).get(user.username, {})


def person_claims(request) -> dict:
    return claims_of(request.user)


class ClaimsValidator(OAuth2Validator):
    # Every claim below goes into the ID token and userinfo, whatever the scopes.
    oidc_claim_scope = None

    def get_additional_claims(self, request):
        # Names starting with "_" say how the provider behaves for this person: no claims,
        # but those `_distributed` holds (`_claim_names` and `_claim_sources`, as a provider
        # names claims it keeps elsewhere).
        behaviour = person_claims(request)
        claims = {k: v for k, v in behaviour.items() if not k.startswith("_")}
        claims.update(behaviour.get("_distributed", {}))
        return {"preferred_username": request.user.username, **claims}

    def finalize_id_token(self, id_token, token, token_handler, request):
        signed = super().finalize_id_token(id_token, token, token_handler, request)
        behaviour = person_claims(request)
        named, dropped = behaviour.get("_key_id", True), behaviour.get("_drop_claims", [])
        if named and not dropped:
            return signed
        key = request.client.jwk_key
        claims = json.loads(jwt.JWT(jwt=signed, key=key).claims)
        # A provider with a single signing key may leave the key id out of the header.
        header = {"typ": "JWT", "alg": request.client.algorithm}
        if named:
            header["kid"] = key.thumbprint()
        resigned = jwt.JWT(
            header=header, claims={k: v for k, v in claims.items() if k not in dropped}
        )
        resigned.make_signed_token(key)
        return resigned.serialize()
