"""A page names every module its scripts import, however deep, as a modulepreload: the browser
fetches them all at once, not one level of imports per round trip (the chat page's imports
go four levels deep: main.js, messages.js, markdown.js, the vendored renderers)."""

import posixpath
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "static"
IMPORTED = re.compile(r'(?:import|from)\s*"(\.\.?/[^"]+)"')


class ModuleTags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts: list[str] = []
        self.preloads: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("type") == "module":
            self.scripts.append(attrs["src"])
        elif tag == "link" and attrs.get("rel") == "modulepreload":
            self.preloads.append(attrs["href"])


def imports_of(url: str) -> set[str]:
    """Every module the one at `url` imports, directly or not (as /static/ URLs)."""
    found: set[str] = set()
    pending = [url]
    while pending:
        current = pending.pop()
        source = (STATIC / current.removeprefix("/static/")).read_text()
        for name in IMPORTED.findall(source):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(current), name))
            assert (STATIC / target.removeprefix("/static/")).is_file(), target
            if target not in found:
                found.add(target)
                pending.append(target)
    return found


def module_tags(response) -> ModuleTags:
    assert response.status_code == 200
    tags = ModuleTags()
    tags.feed(response.content.decode())
    return tags


@pytest.mark.parametrize("path", ["/", "/settings/", "/teams/{team}/"])
def test_every_module_a_page_imports_is_preloaded(owner_in_team, team, path):
    tags = module_tags(owner_in_team.get(path.format(team=team.pk)))
    assert tags.scripts
    wanted = set().union(*(imports_of(script) for script in tags.scripts))
    assert wanted, "these pages' scripts import modules"
    assert wanted <= set(tags.preloads), sorted(wanted - set(tags.preloads))


def test_the_chat_page_preloads_its_renderers_and_nothing_twice(owner_in_team):
    tags = module_tags(owner_in_team.get("/"))
    assert "/static/vendor/marked/marked.esm.js" in tags.preloads
    # Imported only when an answer shows code (static/js/chat/markdown.js): not preloaded.
    assert "/static/vendor/highlight/highlight.min.js" not in tags.preloads
    assert len(tags.preloads) == len(set(tags.preloads))
    assert not set(tags.preloads) & set(tags.scripts)


def test_the_sign_in_page_preloads_what_its_script_imports(client):
    tags = module_tags(client.get("/accounts/login/"))
    assert tags.scripts == ["/static/js/site.js"]
    assert tags.preloads == ["/static/js/chat/composer-draft.js", "/static/js/local-times.js"]
