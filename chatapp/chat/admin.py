from django.contrib import admin

from chatapp.chat.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["role", "status", "content", "model", "prompt_tokens", "completion_tokens"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "team", "model", "updated_at"]
    list_select_related = ["owner", "team"]
    search_fields = ["title"]
    raw_id_fields = ["owner", "team", "system_prompt"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "conversation", "role", "status", "model", "created_at"]
    list_filter = ["role", "status"]
    list_select_related = ["conversation"]
    raw_id_fields = ["conversation"]
