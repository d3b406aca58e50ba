from django.contrib import admin

from chatapp.teams.models import Invitation, Membership, SystemPrompt, SystemPromptVersion, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "personal_owner", "created_at"]
    search_fields = ["name"]
    raw_id_fields = ["personal_owner"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "team"]
    raw_id_fields = ["user", "team"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["team", "email", "role", "expires_at", "accepted_at"]
    list_select_related = ["team"]
    raw_id_fields = ["team", "invited_by", "accepted_by"]
    exclude = ["token"]


class SystemPromptVersionInline(admin.TabularInline):
    model = SystemPromptVersion
    extra = 0
    readonly_fields = ["version", "name", "content", "edited_by", "created_at"]
    can_delete = False


@admin.register(SystemPrompt)
class SystemPromptAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "is_default", "locked", "position", "version", "updated_at"]
    list_filter = ["is_default", "locked"]
    list_select_related = ["team"]
    search_fields = ["name", "content"]
    raw_id_fields = ["team"]
    readonly_fields = ["version"]
    inlines = [SystemPromptVersionInline]
