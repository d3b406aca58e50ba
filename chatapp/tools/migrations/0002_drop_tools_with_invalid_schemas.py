"""Tools stored before their input schemas were checked: one that is no valid JSON Schema
would go to the model API in every chat request (which refuses the whole request for it).
They are dropped here, once, as a refresh of their server now leaves them out, and the
server's status names them; the chat does not check schemas on every answer."""

from django.db import migrations

from chatapp.teams.json_schemas import parameters_problem


def drop_tools_with_invalid_schemas(apps, schema_editor) -> None:
    Tool = apps.get_model("tools", "Tool")
    ToolServer = apps.get_model("tools", "ToolServer")
    unusable: dict[int, list[tuple[int, str]]] = {}
    for pk, server_id, name, schema in Tool.objects.values_list(
        "pk", "server_id", "name", "input_schema"
    ).iterator():
        if parameters_problem(schema or {"type": "object", "properties": {}}):
            unusable.setdefault(server_id, []).append((pk, name))
    for server_id, tools in unusable.items():
        Tool.objects.filter(pk__in=[pk for pk, _ in tools]).delete()
        names = sorted(name for _, name in tools)
        count = f"{len(names)} tool" if len(names) == 1 else f"{len(names)} tools"
        note = (
            f"Left out {count} whose input schema is not a valid JSON Schema: {', '.join(names)}."
        )
        server = ToolServer.objects.get(pk=server_id)
        server.last_error = f"{server.last_error} {note}".strip()[:500]
        server.save(update_fields=["last_error"])


class Migration(migrations.Migration):
    dependencies = [("tools", "0001_initial")]

    operations = [
        migrations.RunPython(drop_tools_with_invalid_schemas, migrations.RunPython.noop),
    ]
