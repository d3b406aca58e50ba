"""The one JSON API of the project, served under /api/: every app's endpoints, one convention
(chatapp.core.api), and the OpenAPI document at /api/openapi.json."""

from chatapp.accounts.api import router as accounts_router
from chatapp.chat.api import router as chat_router
from chatapp.chat.export_api import router as export_router
from chatapp.chat.share_api import router as share_router
from chatapp.core.api import new_api
from chatapp.teams.api import router as teams_router
from chatapp.tools.api import router as tools_router
from chatapp.uploads.api import router as uploads_router

api = new_api(
    [
        chat_router,
        share_router,
        export_router,
        uploads_router,
        accounts_router,
        teams_router,
        tools_router,
    ]
)
