from django.urls import path

from chatapp.teams import api, views

app_name = "teams"

team = "teams/<int:team_id>/"

urlpatterns = [
    path("teams/", views.team_list, name="list"),
    path(team, views.detail, name="detail"),
    path(team + "switch/", views.switch, name="switch"),
    path(team + "leave/", views.leave, name="leave"),
    path(team + "members/", views.members, name="members"),
    path(team + "members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path(team + "members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path(team + "invitations/", views.invite, name="invite"),
    path(
        team + "invitations/<int:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path(team + "prompts/", views.prompts, name="prompts"),
    path(team + "prompts/<int:prompt_id>/", views.prompt_edit, name="prompt_edit"),
    path(team + "prompts/<int:prompt_id>/delete/", views.prompt_delete, name="prompt_delete"),
    path(team + "prompts/<int:prompt_id>/move/", views.prompt_move, name="prompt_move"),
    path(team + "policy/", views.policy, name="policy"),
    path(team + "provider/", views.provider, name="provider"),
    path(team + "usage/", views.usage, name="usage"),
    path(team + "audit/", views.audit, name="audit"),
    path("invite/<str:token>/", views.accept_invitation, name="accept"),
    path("api/system-prompts/", api.prompt_list, name="api_prompts"),
    path("api/system-prompts/<int:prompt_id>/", api.prompt_detail, name="api_prompt"),
]
