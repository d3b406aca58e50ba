"""`{% module_script "js/chat/main.js" %}`: an ES module's script tag, with a modulepreload link
for each module it imports, however deep. Without them the browser learns of each level of
imports only once the level above has arrived: a round trip per level (bench/README.md)."""

import posixpath
import re
from functools import cache
from pathlib import Path
from typing import cast

from django import template
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()

# Our modules import by relative path in double quotes (Biome's format); vendored ones import none.
IMPORTED = re.compile(r'(?:\bimport|\bfrom)\s*"(\.\.?/[^"]+)"')


@cache
def imported_modules(path: str) -> tuple[str, ...]:
    """The static paths of the modules `path` imports, directly or not, nearest first."""
    found: list[str] = []
    pending = [path]
    while pending:
        current = pending.pop(0)
        source = finders.find(current)
        if source is None:  # a broken import shows in the browser's console, not as a 500
            continue
        for name in IMPORTED.findall(Path(source).read_text()):
            module = posixpath.normpath(posixpath.join(posixpath.dirname(current), name))
            if module != path and module not in found:
                found.append(module)
                pending.append(module)
    return tuple(found)


@register.simple_tag(takes_context=True)
def module_script(context: template.Context, path: str) -> SafeString:
    # One link per module on a page, though base.html's script and the page's share imports.
    if "module_script" not in context.render_context:
        context.render_context["module_script"] = set()
    on_page = cast(set[str], context.render_context["module_script"])
    on_page.add(path)
    preloads = [module for module in imported_modules(path) if module not in on_page]
    on_page.update(preloads)
    links = format_html_join(
        "", '<link rel="modulepreload" href="{}">', ((static(module),) for module in preloads)
    )
    return format_html('<script type="module" src="{}"></script>{}', static(path), links)
