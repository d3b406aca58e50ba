import json
import os

from oauth2_provider.oauth2_validators import OAuth2Validator


class ClaimsValidator(OAuth2Validator):
    # Every claim below goes into the ID token and userinfo, whatever the scopes.
    oidc_claim_scope = None

    def get_additional_claims(self, request):
        with open(os.environ["OIDC_PROVIDER_CLAIMS"]) as stream:
            claims = json.load(stream).get(request.user.username, {})
        return {"preferred_username": request.user.username, **claims}
