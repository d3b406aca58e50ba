from django.urls import path

from chatapp.tools import views

app_name = "tools"

server = "teams/<id:team_id>/tools/<id:server_id>/"

urlpatterns = [
    path("teams/<id:team_id>/tools/", views.tools_page, name="page"),
    path(server, views.server_change, name="server_change"),
    path(server + "tools/", views.tool_choices, name="tool_choices"),
    path(server + "refresh/", views.server_refresh, name="server_refresh"),
    path(server + "remove/", views.server_remove, name="server_remove"),
]
