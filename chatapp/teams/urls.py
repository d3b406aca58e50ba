from django.urls import path

from chatapp.teams import views

app_name = "teams"

team = "teams/<id:team_id>/"

urlpatterns = [
    path("teams/", views.team_list, name="list"),
    path(team, views.detail, name="detail"),
    path(team + "switch/", views.switch, name="switch"),
    path(team + "leave/", views.leave, name="leave"),
    path(team + "members/", views.members, name="members"),
    path(team + "members/<id:membership_id>/role/", views.member_role, name="member_role"),
    path(team + "members/<id:membership_id>/remove/", views.member_remove, name="member_remove"),
    path(team + "keys/<id:key_id>/revoke/", views.member_key_revoke, name="member_key_revoke"),
    path(team + "invitations/", views.invite, name="invite"),
    path(
        team + "invitations/<id:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path(
        team + "invitations/<id:invitation_id>/confirm/",
        views.invitation_confirm,
        name="invitation_confirm",
    ),
    path(team + "prompts/", views.prompts, name="prompts"),
    path(team + "prompts/starters/", views.starters, name="starters"),
    path(team + "prompts/<id:prompt_id>/", views.prompt_edit, name="prompt_edit"),
    path(team + "prompts/<id:prompt_id>/delete/", views.prompt_delete, name="prompt_delete"),
    path(team + "prompts/<id:prompt_id>/move/", views.prompt_move, name="prompt_move"),
    path(team + "json-schemas/", views.json_schemas, name="json_schemas"),
    path(team + "json-schemas/<id:schema_id>/", views.json_schema_edit, name="json_schema_edit"),
    path(
        team + "json-schemas/<id:schema_id>/delete/",
        views.json_schema_delete,
        name="json_schema_delete",
    ),
    path(team + "policy/", views.policy, name="policy"),
    path(team + "provider/", views.provider, name="provider"),
    path(team + "usage/", views.usage, name="usage"),
    path(team + "usage/chargeback.csv", views.usage_csv, name="usage_csv"),
    path(team + "safety/", views.safety_queue, name="safety"),
    path(team + "safety/<id:flag_id>/review/", views.safety_review, name="safety_review"),
    path(team + "audit/", views.audit, name="audit"),
    path("site/audit/", views.site_audit, name="site_audit"),
    path("invite/<slug:token>/", views.accept_invitation, name="accept"),
    path(
        "invite/<slug:token>/confirm/<str:signature>/",
        views.accept_confirmed,
        name="accept_confirmed",
    ),
]
