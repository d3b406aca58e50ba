from django.contrib import admin

from chatapp.accounts.models import UserSettings


@admin.register(UserSettings)
class UserSettingsAdmin(admin.ModelAdmin):
    list_display = ["user", "model", "temperature", "max_tokens", "top_p", "updated_at"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
