"""The documentation stays true to the code: every setting documented, every link alive."""

import re
from pathlib import Path

from tests.deploy.files import clean_env, documented_variables, load_settings

ROOT = Path(__file__).resolve().parents[2]
# A variable read through django-environ or one of the settings module's env_* helpers.
READ_FROM_ENV = re.compile(r"\benv(?:_\w+|\.\w+)\(\s*\"([A-Z][A-Z0-9_]+)\"")
LINK = re.compile(r"\]\(([^)\s]+)\)")


HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "chatapp").glob("*/README.md"))
    return files + [ROOT / d / "README.md" for d in ("bench", "tests", "llama_simulator")]


def anchors(page: Path) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces as
    dashes, a repeated one numbered."""
    ids: set[str] = set()
    counts: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        ids.add(f"{slug}-{counts[slug]}" if slug in counts else slug)
        counts[slug] = counts.get(slug, 0) + 1
    return ids


def test_every_variable_the_settings_read_is_in_the_configuration_doc():
    read = set(READ_FROM_ENV.findall((ROOT / "chatapp/settings.py").read_text()))
    assert {"SECRET_KEY", "DATABASE_URL", "LLAMA_API_KEY"} <= read  # the pattern finds them
    assert sorted(read - documented_variables()) == []


def test_every_documented_variable_is_read_by_the_settings_or_the_tools_that_start_them():
    """The doc's own table of what the image, compose and `make run` read is the only
    exception, and each of those is read where the doc says."""
    read = set(READ_FROM_ENV.findall((ROOT / "chatapp/settings.py").read_text()))
    doc = (ROOT / "docs/configuration.md").read_text()
    launchers = doc.split("`make run` read a few more:", 1)[1].split("\n\n", 2)[1]
    launched = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", launchers, re.M))
    assert {"PORT", "SIMULATOR_PORT"} <= launched  # the table is where the pattern looks
    assert sorted(documented_variables() - read - launched) == []
    sources = [ROOT / "Makefile", ROOT / "Dockerfile", ROOT / "docker-compose.yml"]
    sources += [*(ROOT / "scripts").glob("*.py"), *(ROOT / "deploy").rglob("*.sh")]
    text = "\n".join(path.read_text() for path in sources)
    assert sorted(n for n in launched if not re.search(rf"\b{n}\b", text)) == []


def test_documented_number_defaults_are_the_settings_own():
    """Each variable documented with a plain number as its default, read as the settings
    module of the same name holds it, from an environment that sets none of them."""
    doc = (ROOT / "docs/configuration.md").read_text()
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| `?([0-9]+)`?(?: \([^)]*\))? \|", doc, re.M)
    documented = {name: int(default) for name, default in rows}
    assert {"CHAT_MAX_CONTENT_BYTES", "UPLOAD_MAX_FILE_BYTES"} <= set(documented)
    names = sorted(documented)
    result = load_settings(clean_env(SECRET_KEY="x" * 50), *names)
    assert result.returncode == 0, result.stderr
    loaded = dict(zip(names, result.stdout.splitlines(), strict=True))
    named_alike = {name: value for name, value in loaded.items() if value != "None"}
    assert len(named_alike) >= 15  # the rest have settings of other names (LLAMA_TIMEOUTS...)
    assert {name: float(value) for name, value in named_alike.items()} == {
        name: documented[name] for name in named_alike
    }


def test_relative_links_in_the_docs_point_at_files_and_headings_that_exist():
    broken = []
    for page in markdown_files():
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            path, _, anchor = target.partition("#")
            if "://" in target or target.startswith("mailto:"):
                continue
            linked = page.parent / path if path else page
            if not linked.exists() or (
                anchor and linked.suffix == ".md" and anchor not in anchors(linked)
            ):
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_heading_anchors_are_githubs():
    page = ROOT / "docs/operations.md"
    assert {"rotating-secret_key", "scaling", "backups-and-data"} <= anchors(page)
    assert "managepy-purge_expired" in anchors(ROOT / "docs/sharing-retention.md")


def test_the_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_every_management_command_is_in_the_operations_doc_s_table():
    shipped = {
        path.stem
        for path in (ROOT / "chatapp").glob("*/management/commands/*.py")
        if path.stem != "__init__"
    }
    assert {"purge_expired", "audit_verify", "serve"} <= shipped  # the glob finds them
    doc = (ROOT / "docs/operations.md").read_text()
    table = doc.split("### Commands", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)", table, re.M))
    assert sorted(shipped - listed) == []


def test_the_operations_doc_backs_up_and_restores_database_files_and_secrets():
    doc = (ROOT / "docs/operations.md").read_text()
    backups = doc.split("### Backing up and restoring", 1)[1].split("\n### ", 1)[0]
    for part in (
        "pg_dump",
        "psql",
        "sqlite3",
        "MEDIA_ROOT",
        "UPLOADS_S3_BUCKET",
        "SECRET_KEY",
        "FIELD_ENCRYPTION_KEY",
        "audit_verify",
        "purge_expired",
    ):
        assert part in backups, part


def test_the_v1_errors_the_docs_cite_are_in_the_protocols_table():
    """A `status code` the API keys page or the /v1 section names is a row of the /v1 error
    table: a client checks `error.code`, so a type (`insufficient_quota`) cited as the code
    would send it looking for a code never sent."""
    v1 = (ROOT / "docs/protocol.md").read_text().split("## OpenAI-compatible API: `/v1/`", 1)[1]
    table = v1.split("- **Errors**", 1)[1].split("\n### ", 1)[0]
    listed = set()
    for statuses, codes in re.findall(r"^\s*\| ([\d /]+) \| `\w+` \| (.*?) \|", table, re.M):
        codes = re.sub(r"\(`param`[^)]*\)", "", codes)  # the parameter named, not a code
        for status in re.findall(r"\d{3}", statuses):
            listed |= {(status, code) for code in re.findall(r"`(\w+)`", codes)}
    assert {("429", "quota_exceeded"), ("502", "auth_failed")} <= listed  # the table is read
    cited = set()
    for text in ((ROOT / "docs/api-keys.md").read_text(), v1):
        cited |= set(re.findall(r"`(\d{3})\s+([a-z_]+)`", text))
        cited |= set(re.findall(r"`(\d{3})`\s+`([a-z_]+)`", text))
    assert len(cited) >= 10
    assert sorted(cited - listed) == []


def test_every_code_the_tool_server_api_refuses_with_is_in_the_protocol_doc():
    raised = set(
        re.findall(
            r'ToolActionError\(\s*"([a-z_]+)"', (ROOT / "chatapp/tools/actions.py").read_text()
        )
    )
    assert {"name_taken", "url_refused", "changed"} <= raised  # the pattern finds them
    doc = (ROOT / "docs/protocol.md").read_text()
    section = doc.split("### Team tool servers (MCP)", 1)[1].split("\n### ", 1)[0]
    assert sorted(raised - set(re.findall(r"`([a-z_]+)`", section))) == []
