from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html

from chatapp.core.admin import CountsWhatGoes, NotDeletedHere
from chatapp.core.text import NameField, validate_one_line
from chatapp.llm import GUARD_CATEGORIES
from chatapp.teams import actions
from chatapp.teams.datafilter import MAX_PATTERNS, PATTERN_NAME, pattern_problem
from chatapp.teams.forms import (
    MAX_RETENTION_DAYS,
    PolicyForm,
    ProviderForm,
    clean_provider_url,
    is_model_id,
)
from chatapp.teams.models import (
    AuditEvent,
    Invitation,
    Membership,
    SystemPrompt,
    SystemPromptVersion,
    Team,
    TeamPolicy,
    TeamProvider,
    TeamUsage,
)


class MembersFilter(admin.SimpleListFilter):
    """A team nobody is in is kept only for former members' conversations: a site admin finds
    those here, to delete them when they are no longer wanted."""

    title = "members"
    parameter_name = "members"

    def lookups(self, request, model_admin):
        return [("none", "None (kept for former members' chats)"), ("some", "Some")]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(member_count=0)
        if self.value() == "some":
            return queryset.filter(member_count__gt=0)
        return queryset


class TeamAdminForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ["name", "personal_owner"]
        field_classes = {"name": NameField}  # composed, as on the Teams page

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        validate_one_line(name)  # as on the Teams page: it heads mails and every member's pages
        return name


@admin.register(Team)
class TeamAdmin(CountsWhatGoes):
    """Creating, renaming and deleting go through the actions, so they are audited."""

    form = TeamAdminForm
    # A team per person: counted once, and each team's members counted for its page only,
    # not over a join of every team with every membership.
    show_full_result_count = False
    list_display = ["name", "personal_owner", "members", "created_at"]
    list_filter = [MembersFilter]
    list_select_related = ["personal_owner"]
    search_fields = ["name"]
    raw_id_fields = ["personal_owner"]
    readonly_fields = ["people"]

    def get_queryset(self, request):
        members = Membership.objects.filter(team=OuterRef("pk")).order_by().values("team")
        count = Subquery(members.annotate(n=Count("pk")).values("n"))
        return super().get_queryset(request).annotate(member_count=Coalesce(count, 0))

    @admin.display(description="members", ordering="member_count")
    def members(self, team: Team) -> int:
        return team.member_count  # type: ignore[attr-defined]

    @admin.display(description="people")
    def people(self, team: Team) -> str:
        """A link to the team's memberships, a page at a time: a team of thousands would be
        thousands of lines here. They are added, changed and removed there, where it is audited."""
        if team.pk is None:
            return "-"
        url = reverse("admin:teams_membership_changelist") + f"?team__id__exact={team.pk}"
        count = team.member_count  # type: ignore[attr-defined]
        return format_html('<a href="{}">{} member{}</a>', url, count, pluralize(count))

    def save_model(self, request, obj, form, change):
        actions.admin_save_team(request.user, obj)

    def get_deleted_objects(self, objs, request):
        """A team under legal hold is shown as protected: Django's pages then delete nothing."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, perms_needed, [*protected, *actions.held_notes(objs)]

    def delete_model(self, request, obj):
        actions.admin_delete_team(request.user, obj)

    def delete_queryset(self, request, queryset):
        for team in queryset:  # each one audited, as one by one
            actions.admin_delete_team(request.user, team)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Saves and deletions go through the actions, so they are audited."""

    list_display = ["user", "team", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "team"]
    raw_id_fields = ["user", "team"]

    def get_readonly_fields(self, request, obj=None):
        # A membership is one person's in one team: changing either is another membership.
        return ["user", "team"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        actions.admin_save_membership(request.user, obj)

    def delete_model(self, request, obj):
        actions.admin_remove_membership(request.user, obj)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("team", "user"):
            actions.admin_remove_membership(request.user, membership)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations are made on the team's Members page (members or admins, audited); here they
    are shown and revoked (audited too)."""

    list_display = ["team", "email", "role", "expires_at", "accepted_at"]
    list_select_related = ["team"]
    raw_id_fields = ["team", "invited_by", "accepted_by"]
    exclude = ["token"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj):
        actions.revoke_invitation(request.user, obj)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except actions.ActionError as error:  # used already: it is the record of who joined
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:teams_invitation_changelist"))

    def delete_queryset(self, request, queryset):
        for invitation in queryset.select_related("team"):
            try:
                actions.revoke_invitation(request.user, invitation)
            except actions.ActionError as error:
                target = invitation.email or "a shareable link"
                self.message_user(request, f"{target}: {error.message}", messages.ERROR)


class SystemPromptVersionInline(admin.TabularInline):
    model = SystemPromptVersion
    extra = 0
    readonly_fields = ["version", "name", "content", "edited_by", "created_at"]
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("edited_by")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class StaysInItsTeam(admin.ModelAdmin):
    """The team is read-only once the row exists: its saves, versions and audit are the team's.
    Saves go through the team's actions; a change they refuse is said as the page's message."""

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "team"] if obj is not None else self.readonly_fields

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except actions.ActionError as error:  # the save's transaction was rolled back
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class SystemPromptAdminForm(forms.ModelForm):
    class Meta:
        field_classes = {"name": NameField}  # composed, as on the Prompts page

    def _get_validation_exclusions(self) -> set[str]:
        # One default per team is not checked here: actions.save_prompt moves the default
        # from the old prompt to this one, as the team's Prompts page does.
        exclusions = super()._get_validation_exclusions()  # type: ignore[misc]  # not in the stubs
        return {*exclusions, "is_default"}

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        validate_one_line(name)  # as on the Prompts page: every member reads it
        return name

    def clean(self) -> dict:
        data = super().clean() or {}
        # The team is read-only once the prompt exists, so the form's own check of the
        # team's unique names leaves it out: checked here, before save_model.
        name = data.get("name")
        if self.instance.pk and name:
            taken = SystemPrompt.objects.filter(team_id=self.instance.team_id, name=name)
            if taken.exclude(pk=self.instance.pk).exists():
                self.add_error("name", f"A prompt named {name!r} already exists in this team.")
        return data


@admin.register(SystemPrompt)
class SystemPromptAdmin(StaysInItsTeam):
    """Saves go through actions.save_prompt, so admin edits keep versions and are audited."""

    form = SystemPromptAdminForm
    list_display = ["name", "team", "is_default", "locked", "position", "version", "updated_at"]
    list_filter = ["is_default", "locked"]
    list_select_related = ["team"]
    search_fields = ["name", "content"]
    raw_id_fields = ["team"]
    readonly_fields = ["version"]
    exclude = ["response_format", "json_schema"]  # the team's Prompts page sets the format
    inlines = [SystemPromptVersionInline]

    def save_model(self, request, obj, form, change):
        names = ("name", "content", "is_default", "locked", "position")
        names += ("response_format", "json_schema")  # kept as they are: not on this form
        fields = {name: getattr(obj, name) for name in names}
        # save_prompt reads the stored prompt itself (and says so when it has gone).
        saved = actions.save_prompt(request.user, obj.team, obj if change else None, **fields)
        obj.pk, obj.version = saved.pk, saved.version

    def delete_model(self, request, obj):
        actions.delete_prompt(request.user, obj)

    def delete_queryset(self, request, queryset):
        for prompt in queryset.select_related("team"):  # each one audited, as one by one
            actions.delete_prompt(request.user, prompt)


PATTERN_SHAPE = (
    'Write a list of {"name": "PROJECT", "pattern": "<regular expression>", "action": "redact"'
    ' or "block"}: a NAME in capitals, a pattern of one line.'
)


# Numbers kept within the policy page's ranges: a budget of 0 refused every message while no
# meter showed it (0 reads as no budget there), and the page could not save over it.
PAGE_RANGES = (
    "default_top_p",
    "default_max_tokens",
    "max_tokens_limit",
    "monthly_token_budget",
    "member_monthly_token_budget",
    "rate_limit_per_minute",
)


class TeamPolicyAdminForm(forms.ModelForm):
    """The JSON fields as the policy page accepts them: in another shape, every question of
    the team would fail (a pattern) or be judged by other categories ("S10" counted S1)."""

    def clean(self) -> dict:
        data = super().clean() or {}
        for name in PAGE_RANGES:
            if data.get(name) is not None:
                try:
                    PolicyForm.base_fields[name].run_validators(data[name])
                except forms.ValidationError as error:
                    self.add_error(name, error)
        return data

    def clean_allowed_models(self) -> list:
        value = self.cleaned_data["allowed_models"]
        if value is None:  # left blank: every model the site offers
            return []
        if not isinstance(value, list) or not all(
            isinstance(model, str) and len(model) <= 200 and is_model_id(model) for model in value
        ):
            raise forms.ValidationError(
                'Write a list of model ids, such as ["Llama-3.3-70B-Instruct"]; [] for every model.'
            )
        return list(dict.fromkeys(value))

    def clean_safety_categories(self) -> list:
        value = self.cleaned_data["safety_categories"] or []  # left blank: all of them
        if not isinstance(value, list) or any(code not in GUARD_CATEGORIES for code in value):
            raise forms.ValidationError('Write a list of category codes, such as ["S1", "S10"].')
        return value

    def clean_retention_days(self) -> int | None:
        # Past a hundred years the purge's cutoff falls before year 1: it failed for every team.
        value = self.cleaned_data["retention_days"]
        if value is not None and not 1 <= value <= MAX_RETENTION_DAYS:
            raise forms.ValidationError(
                f"Write a number of days from 1 to {MAX_RETENTION_DAYS}; empty: keep forever."
            )
        return value

    def clean_data_patterns(self) -> list:
        value = self.cleaned_data["data_patterns"] or []
        if not isinstance(value, list) or len(value) > MAX_PATTERNS:
            raise forms.ValidationError(f"{PATTERN_SHAPE} At most {MAX_PATTERNS}.")
        for item in value:
            if not _pattern_shaped(item):
                raise forms.ValidationError(PATTERN_SHAPE)
            if problem := pattern_problem(item["pattern"]):
                raise forms.ValidationError(f"{item['name']}: {problem}.")
        return value


def _pattern_shaped(item: object) -> bool:
    if not isinstance(item, dict) or set(item) != {"name", "pattern", "action"}:
        return False
    name, pattern = item["name"], item["pattern"]
    return (
        isinstance(name, str)
        and PATTERN_NAME.fullmatch(name) is not None
        and item["action"] in ("redact", "block")
        and isinstance(pattern, str)
        and pattern.splitlines() == [pattern]
        and pattern == pattern.strip()
    )


@admin.register(TeamPolicy)
class TeamPolicyAdmin(StaysInItsTeam, NotDeletedHere):
    """Saves go through actions.set_policy, so admin changes are audited; emptied fields are
    the site's defaults again (a deletion here would not be audited)."""

    form = TeamPolicyAdminForm
    list_display = ["team", "default_model", "monthly_token_budget", "rate_limit_per_minute"]
    list_select_related = ["team"]
    raw_id_fields = ["team"]

    def save_model(self, request, obj, form, change):
        values = {name: getattr(obj, name) for name in actions.POLICY_FIELDS}
        actions.set_policy(request.user, obj.team, values)


class ProviderAdminForm(forms.ModelForm):
    """The key is write-only here too: an empty field keeps the stored key."""

    api_key = ProviderForm.base_fields["api_key"]
    clear_key = forms.BooleanField(required=False, label="Remove the stored key")

    class Meta:
        model = TeamProvider
        fields = ["team", "base_url", "protocol"]

    def clean_base_url(self) -> str:
        return clean_provider_url(self.cleaned_data["base_url"])

    def clean(self) -> dict:
        data = super().clean() or {}
        stored = TeamProvider.objects.filter(pk=self.instance.pk).first()
        args = (data.get("base_url", ""), data.get("api_key", ""), data.get("clear_key", False))
        if problem := actions.provider_change_problem(stored, *args):
            raise forms.ValidationError(problem)
        return data


@admin.register(TeamProvider)
class TeamProviderAdmin(StaysInItsTeam, NotDeletedHere):
    """An empty URL with the key removed is the site's server (a deletion would not be audited)."""

    form = ProviderAdminForm
    list_display = ["team", "base_url", "protocol", "has_key", "updated_at"]
    list_select_related = ["team"]
    raw_id_fields = ["team"]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        actions.set_provider(
            request.user,
            obj.team,
            base_url=data["base_url"],
            protocol=data["protocol"],
            api_key=data["api_key"],
            clear_key=data["clear_key"],
        )


@admin.register(TeamUsage)
class TeamUsageAdmin(NotDeletedHere):
    """The month's budgets and chargeback count these rows."""

    # A table that grows with use: counted once, newest first by key (its index), not sorted
    # whole at each visit. The day's filter (today, this month, this year...) rather than a
    # date hierarchy, which reads every row for its first and last day and for its years.
    show_full_result_count = False
    ordering = ["-id"]

    list_display = ["day", "team", "user", "model", "prompt_tokens", "completion_tokens"]
    list_filter = ["day"]
    list_select_related = ["team", "user"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    # A table that grows with use: counted once, newest first by key (its index), not sorted
    # whole at each visit.
    show_full_result_count = False
    ordering = ["-id"]

    list_display = ["created_at", "team_name", "actor_name", "action", "summary"]
    list_filter = ["action"]
    search_fields = ["summary"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the trail of who changed what: nobody edits it away
