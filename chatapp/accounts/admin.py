from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction

from chatapp.accounts import actions
from chatapp.accounts.forms import NewUsernameMixin
from chatapp.accounts.models import UserSettings
from chatapp.accounts.usernames import lookalike_refusal
from chatapp.core.admin import deletion_summary
from chatapp.teams.actions import held_notes, held_teams_losing, personal_teams_deleted_with

User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


def taken_message(field: str) -> str:
    return f"Another account already has this {field}."


def another_has(field: str, value: str, account_pk) -> bool:
    """Whether an account other than this one has the name or address, in any letter case."""
    others = User.objects.exclude(pk=account_pk)
    return bool(value) and others.filter(**{f"{field}__iexact": value}).exists()


def taken_by_another(user) -> str | None:
    """Which of the account's name and address another account has, in any letter case."""
    fields = ("email", "username")
    return next((f for f in fields if another_has(f, getattr(user, f), user.pk)), None)


class TakenMeanwhile(Exception):
    """Another account took the name or the address after the form checked it: the
    database's unique index refused the save."""

    def __init__(self, field: str):
        super().__init__(field)
        self.field = field


class AccountChangeForm(UserChangeForm):
    """A name or an email another account has, in any letter case, is refused, as at signup:
    company sign-in matches the address, and people and the trail know the account by name."""

    def _taken(self, field: str) -> str:
        value = self.cleaned_data.get(field) or ""
        if another_has(field, value, self.instance.pk):
            raise forms.ValidationError(taken_message(field))
        return value

    def clean_username(self):
        username = self._taken("username")
        # A name the account already has stays, whatever it looks like.
        refusal = lookalike_refusal(username, self.instance)
        if refusal:
            raise forms.ValidationError(refusal)
        return username

    def clean_email(self):
        return self._taken("email")


class AccountCreationForm(NewUsernameMixin, AdminUserCreationForm):
    pass


@admin.register(User)
class AccountAdmin(UserAdmin):
    """Saving and deleting go through the actions, so they are audited; a personal team with
    other people in it is handed over to them rather than deleted with its owner."""

    form = AccountChangeForm
    add_form = AccountCreationForm

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except TakenMeanwhile as taken:
            # Nothing was saved (the view's transaction rolled back): the form again, saying
            # which is taken, as when it was taken before the form checked it.
            request.taken_meanwhile = taken.field
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        taken = getattr(request, "taken_meanwhile", None)
        if taken is None:
            return form

        class TakenForm(form):
            def clean(self):
                cleaned = super().clean()
                if taken in self.fields and taken not in self.errors:
                    self.add_error(taken, taken_message(taken))
                return cleaned

        return TakenForm

    def save_model(self, request, obj, form, change):
        try:
            actions.admin_save_user(request.user, obj)  # in a savepoint: the check below runs
        except IntegrityError:
            taken = taken_by_another(obj)
            if taken is None:
                raise
            raise TakenMeanwhile(taken) from None

    def save_related(self, request, form, formsets, change):
        # The groups and permissions are saved here, after save_model.
        before = actions.permissions_of(form.instance) if change else {}
        super().save_related(request, form, formsets, change)
        if change:
            actions.audit_permissions(request.user, form.instance, before)

    def user_change_password(self, request, id, form_url=""):
        # Django's view saves the form itself: the audit compares the stored hash around it.
        with transaction.atomic():
            user = self.get_object(request, unquote(id))
            before = user.password if user is not None else None
            response = super().user_change_password(request, id, form_url)
            if user is not None:
                user.refresh_from_db(fields=["password"])
                if user.password != before:
                    actions.audit_password_set(request.user, user)
        return response

    def delete_model(self, request, obj):
        actions.delete_users(request.user, [obj])

    def delete_queryset(self, request, queryset):
        actions.delete_users(request.user, queryset)

    def get_deleted_objects(self, objs, request):
        # The confirmation names the personal teams that go too (their key only empties); a
        # team under legal hold that would lose them, or their conversations, keeps them.
        going = personal_teams_deleted_with(objs)
        deleted, counts, perms_needed, protected = deletion_summary(
            self.admin_site, request, objs, going
        )
        return deleted, counts, perms_needed, [*protected, *held_notes(held_teams_losing(objs))]


@admin.register(Group)
class AuditedGroupAdmin(GroupAdmin):
    """A group's permissions are its members': their changes and its deletion are audited."""

    def save_related(self, request, form, formsets, change):
        before = actions.permissions_of(form.instance) if change else {}
        super().save_related(request, form, formsets, change)
        actions.audit_permissions(request.user, form.instance, before)

    def delete_model(self, request, obj):
        actions.delete_groups(request.user, [obj])

    def delete_queryset(self, request, queryset):
        actions.delete_groups(request.user, queryset)


@admin.register(UserSettings)
class UserSettingsAdmin(admin.ModelAdmin):
    """Saves and deletions go through the actions, so they are audited."""

    list_display = ["user", "model", "temperature", "max_tokens", "top_p", "updated_at"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]

    def get_readonly_fields(self, request, obj=None):
        # One user's settings: moving them to another user is not a change to audit as one.
        return ["user"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        actions.admin_save_settings(request.user, obj)

    def delete_model(self, request, obj):
        actions.admin_delete_settings(request.user, [obj])

    def delete_queryset(self, request, queryset):
        actions.admin_delete_settings(request.user, queryset.select_related("user"))
