"""Sign-in through an OpenID Connect provider, on mozilla-django-oidc's authorization code flow.

The library sends state, nonce and a PKCE challenge and checks them on the way back; this
backend adds what the project needs: endpoints from discovery, the ID token's issuer and
audience checked, accounts found by (issuer, sub) and else by a *verified* e-mail only, and
the groups claim applied to team memberships at every sign-in."""

import logging
import re
import unicodedata

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from chatapp.accounts.signup import (
    FIRST_ACCOUNT_NOTICE,
    invitation_in,
    signup_refusal,
    unconfirmed_signups,
)
from chatapp.accounts.usernames import lookalike_refusal, mixes_scripts
from chatapp.core.group_map import managed_teams, parse_group_map, roles_for
from chatapp.core.permissions import is_site_admin
from chatapp.identity.models import OIDCIdentity
from chatapp.identity.oidc import ProviderUnavailable, callback_url, provider_metadata
from chatapp.teams.actions import InvitationError, accept_invitation, apply_group_roles
from chatapp.teams.models import Invitation
from chatapp.teams.services import switch_team

log = logging.getLogger(__name__)

# How far the provider's clock may run ahead of ours (or an ID token be past its expiry).
CLOCK_SKEW_SECONDS = 60
EMAIL_MAX_LENGTH = 254  # User.email's
SUBJECT_MAX_LENGTH = 255  # OIDCIdentity.subject's
EMAIL_HELD = (
    "Your e-mail address at the identity provider, {email}, belongs to another account here,"
    " so it was not given to this one. Ask a site admin if it should be yours."
)


def verified_email(claims: dict) -> str:
    """The e-mail address, only when the provider says it verified it and an account can hold
    it; else "". Verified is true, or the string "true" (Amazon Cognito's userinfo answer)."""
    email, verified = claims.get("email"), claims.get("email_verified")
    if isinstance(verified, str):
        verified = verified.lower() == "true"
    if not (isinstance(email, str) and verified is True):
        return ""
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        return ""
    return email if len(email) <= EMAIL_MAX_LENGTH else ""


def same_address(one: str, other: str) -> bool:
    """Whether two addresses are one in any letter case, compared as Django's password reset
    compares them (Unicode's caseless match). The database's email__iexact is wider on
    PostgreSQL, whose upper() makes the dotless \u0131 of `f\u0131rm.example`, another domain,
    an I: `ALICE@FIRM.EXAMPLE` there."""

    def folded(address: str) -> str:
        return unicodedata.normalize("NFKC", address).casefold()

    return folded(one) == folded(other)


def holding(users, email: str) -> list:
    """Those of `users` whose address is `email`, in any letter case and nothing wider."""
    return [user for user in users.filter(email__iexact=email) if same_address(user.email, email)]


def give_way(email: str) -> None:
    """Signups that typed this address but never opened the link mailed to it are deleted:
    the provider has proved whose it is (the next signup with the address does the same)."""
    pending = [user.pk for user in holding(unconfirmed_signups(), email)]
    if pending:
        unconfirmed_signups().filter(pk__in=pending).delete()


def groups_listed_elsewhere(claims: dict) -> bool:
    """Whether the provider names where the groups are instead of listing them (a distributed
    claim, as Microsoft Entra ID sends past about 200 groups): no sign of leaving them all."""
    names = claims.get("_claim_names")
    listed = settings.OIDC_GROUPS_CLAIM in claims
    return not listed and isinstance(names, dict) and settings.OIDC_GROUPS_CLAIM in names


def claimed_groups(claims: dict) -> list[str]:
    groups = claims.get(settings.OIDC_GROUPS_CLAIM)
    if not isinstance(groups, list):
        groups = [groups]  # one group as a plain string; anything else names none
    return [g for g in groups if isinstance(g, str)]


def json_object(answer, name: str) -> dict:
    """The provider's answer when it is a JSON object; anything else refuses the sign-in."""
    if not isinstance(answer, dict):
        raise SuspiciousOperation(f"The provider's {name} answer is no JSON object.")
    return answer


def is_provider_callback(request, credentials: dict | None) -> bool:
    """django-axes' whitelist: a callback's failure is no password guess, so it is neither
    counted nor locked (else a few refused codes would lock everyone behind that address out)."""
    return "nonce" in (credentials or {})


class OIDCBackend(OIDCAuthenticationBackend):
    def __init__(self, *args, **kwargs):
        # The library reads the endpoints here; they come from discovery, when a sign-in needs
        # them, not each time Django loads the backend to find a session's user.
        self.UserModel = get_user_model()
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:  # noqa: N802 (the library's name)
        return provider_metadata()["token_endpoint"]

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:  # noqa: N802
        return provider_metadata()["userinfo_endpoint"]

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:  # noqa: N802
        return provider_metadata()["jwks_uri"]

    def authenticate(self, request, **kwargs):
        if not settings.OIDC_ENABLED or request is None or "nonce" not in kwargs:
            return None  # a password login, or sign-in turned off
        try:
            return super().authenticate(request, **kwargs)
        except (requests.RequestException, ProviderUnavailable, jwt.PyJWTError) as exc:
            # A refused code (used twice, expired), an unreachable provider, an expired token.
            log.warning("OpenID Connect sign-in failed: %s", type(exc).__name__)
            return None

    def get_user(self, user_id):
        # Django's check, which the library's get_user skips: a deactivated account is signed out.
        return ModelBackend.get_user(self, user_id)

    def retrieve_matching_jwk(self, token):
        """The provider's key for the ID token: the one with its key id or, for a token that
        names none (a key id is optional, RFC 7515), the provider's one key for our algorithm.
        A key set that is none, or has no such key, refuses the sign-in rather than fail."""
        response = requests.get(self.OIDC_OP_JWKS_ENDPOINT, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        jwks = response.json()
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        key_id = jwt.get_unverified_header(token).get("kid")
        key_type = "RSA" if self.OIDC_RP_SIGN_ALGO.startswith("RS") else "EC"
        found = [
            key
            for key in (keys if isinstance(keys, list) else [])
            if isinstance(key, dict)
            and key.get("kty") == key_type
            and key.get("use", "sig") == "sig"
            and key.get("alg", self.OIDC_RP_SIGN_ALGO) == self.OIDC_RP_SIGN_ALGO
            and (key_id is None or key.get("kid") == key_id)
        ]
        if len(found) != 1:
            raise SuspiciousOperation("The provider's key set has no one key for the ID token.")
        return jwt.PyJWK(found[0])

    def get_payload_data(self, token, key):
        # The library's check, with leeway: PyJWT refuses an `iat` a second in its future.
        algorithm = jwt.get_unverified_header(token).get("alg")
        if algorithm != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation(f"The ID token is signed with {algorithm!r}.")
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            # checked in verify_token; exp and iat are required (OpenID Connect Core 2)
            options={"verify_aud": False, "require": ["exp", "iat"]},
            leeway=CLOCK_SKEW_SECONDS,
        )

    def verify_token(self, token, **kwargs):
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if payload.get("iss") != provider_metadata()["issuer"]:
            raise SuspiciousOperation("The ID token comes from another issuer.")
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token was issued to another client.")
        # OpenID Connect Core 3.1.3.7: a token for several clients names the one it is for.
        authorized = payload.get("azp", None if len(audiences) > 1 else self.OIDC_RP_CLIENT_ID)
        if authorized != self.OIDC_RP_CLIENT_ID:
            raise SuspiciousOperation("The ID token was authorized to another client.")
        return payload

    def get_token(self, payload):
        payload = {**payload, "redirect_uri": callback_url(self.request)}  # as sent at the start
        return json_object(super().get_token(payload), "token endpoint's")

    def get_userinfo(self, access_token, id_token, payload):
        userinfo = json_object(super().get_userinfo(access_token, id_token, payload), "userinfo")
        if userinfo.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("The userinfo answer is about another subject.")
        return {**payload, **userinfo}

    def verify_claims(self, claims) -> bool:
        subject = claims.get("sub")  # at most 255 characters (OpenID Connect Core 2), as kept
        return isinstance(subject, str) and 0 < len(subject) <= SUBJECT_MAX_LENGTH

    def filter_users_by_claims(self, claims):
        issuer = provider_metadata()["issuer"]
        identity = (
            OIDCIdentity.objects.select_related("user")
            .filter(issuer=issuer, subject=claims["sub"])
            .first()
        )
        if identity is not None:
            return [identity.user]
        email = verified_email(claims)
        if not email:
            return []  # never matched through an address the provider did not verify
        give_way(email)
        # An account already linked to another subject of this provider is not taken over.
        users = self.UserModel.objects.exclude(oidc_identities__issuer=issuer).order_by("pk")
        return holding(users, email)

    def get_or_create_user(self, access_token, id_token, payload):
        try:
            with transaction.atomic():
                return super().get_or_create_user(access_token, id_token, payload)
        except IntegrityError:
            # The same person's first sign-in in another request (a second tab, a double
            # click) made the account between our lookup and our insert: the identity's or
            # the username's unique constraint refused ours. Look again and take theirs.
            with transaction.atomic():
                return super().get_or_create_user(access_token, id_token, payload)

    def create_user(self, claims):
        refused, invitation = self._admission(claims)
        if refused:
            return None  # authenticate answers None: the callback's failure page
        user = self.UserModel(username=self._free_username(claims))  # update_user sets the e-mail
        user.set_unusable_password()
        user.save()
        # A plain insert, so that of two first sign-ins at once one wins and the other
        # raises (see get_or_create_user) rather than moving the identity to a second account.
        OIDCIdentity.objects.create(
            issuer=provider_metadata()["issuer"], subject=claims["sub"], user=user
        )
        if is_site_admin(user) and getattr(self, "request", None) is not None:
            messages.info(self.request, FIRST_ACCOUNT_NOTICE)
        user = self.update_user(user, claims)
        if invitation is not None:
            self._join(user, invitation)
        return user

    def _join(self, user, invitation: Invitation) -> None:
        """The account an invitation admitted joins its team at once, as at signup: that uses
        the invitation up, so it admits one account, not everyone who holds the link."""
        request = getattr(self, "request", None)
        try:
            membership, _ = accept_invitation(user, invitation.token, address_verified=True)
        except InvitationError as error:  # used, withdrawn or expired since it was read
            if request is not None:
                messages.error(request, error.message)
            # Raised through get_or_create_user's transaction: the account is not made.
            raise SuspiciousOperation("The invitation admitting the sign-in is spent.") from None
        if request is not None:
            switch_team(request, membership.team)
            messages.success(request, f"Welcome to {membership.team.name}.")

    def update_user(self, user, claims):
        if not user.is_active:
            return user  # refused by the callback: its claims change nothing
        issuer = provider_metadata()["issuer"]
        OIDCIdentity.objects.update_or_create(
            issuer=issuer,
            subject=claims["sub"],
            defaults={"user": user, "last_sign_in_at": timezone.now()},
        )
        self._update_email(user, verified_email(claims))
        rules = parse_group_map(settings.OIDC_GROUP_MAP)
        if rules and groups_listed_elsewhere(claims):
            log.warning(
                "OpenID Connect sign-in of user %s kept their teams: the provider lists the"
                " groups elsewhere (a distributed claim), not in the token",
                user.pk,
            )
        elif rules:
            apply_group_roles(user, roles_for(rules, claimed_groups(claims)), managed_teams(rules))
        return user

    def _update_email(self, user, email: str) -> None:
        """The provider's verified address, unless another account has it (in any letter case):
        two accounts never share one, so this one keeps its own and the person is told why."""
        if not email or user.email.lower() == email:
            return
        give_way(email)
        # Wider than the same address on PostgreSQL (see same_address), as its unique index is.
        if self.UserModel.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
            log.warning(
                "OpenID Connect sign-in kept user %s's e-mail: another has the new one", user.pk
            )
            if getattr(self, "request", None) is not None:
                messages.warning(self.request, EMAIL_HELD.format(email=email))
            return
        user.email = email
        user.save(update_fields=["email"])

    def _admission(self, claims: dict) -> tuple[bool, Invitation | None]:
        """(refused, the invitation that admits the account). SIGNUP_POLICY=domain holds for
        accounts made here too: a verified address at SIGNUP_ALLOWED_DOMAINS, or the invitation
        the sign-in is on its way to accept, which the account then joins. (The provider itself
        is what invite_only trusts: its people are the company's.)"""
        if settings.SIGNUP_POLICY != "domain":
            return False, None
        request = getattr(self, "request", None)
        next_url = request.session.get("oidc_login_next") if request is not None else None
        email, invitation = verified_email(claims), invitation_in(next_url or "")
        if signup_refusal(email, invitation, address_verified=True):
            log.info("OpenID Connect sign-in refused by SIGNUP_POLICY=domain")
            return True, None
        if invitation is not None and signup_refusal(email, None, address_verified=True):
            return False, invitation  # the domain alone would not admit it
        return False, None

    def _free_username(self, claims: dict) -> str:
        """The provider's name for the person, else their address's, else "user"; numbered
        while another account has it or one that could pass for it. In its NFKC form, as
        every other way of naming an account stores it (half-width "ﾔﾏﾀﾞ" is "ヤマダ"): names
        are compared for look-alikes in that form."""
        choices = (claims.get("preferred_username"), verified_email(claims).split("@")[0])
        normal = [self.UserModel.normalize_username(str(choice or "")) for choice in choices]
        bases = [re.sub(r"[^\w.@+-]", "", choice)[:140] for choice in normal if _unmarked(choice)]
        # A name mixing scripts like "mаx" (a Cyrillic а) stays one however it is numbered.
        base = next((base for base in bases if base and not mixes_scripts(base)), "user")
        name, n = base, 1
        while self.UserModel.objects.filter(username__iexact=name).exists() or lookalike_refusal(
            name
        ):
            n += 1
            name = f"{base}{n}"
        return name


def _unmarked(name: str) -> bool:
    """Whether the name has no combining marks, which a username may not hold (Django's rule):
    without them a name written with them (the vowels of "राजेश") would be another name."""
    return not any(unicodedata.category(c).startswith("M") for c in name)
