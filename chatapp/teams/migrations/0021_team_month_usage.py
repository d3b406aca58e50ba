"""Each member's tokens in a team per month, kept as usage is recorded, so the budget check on
every send reads a row per member rather than each day's row per model; filled in from the
usage recorded so far."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import Sum
from django.db.models.functions import TruncMonth


def add_up(apps, schema_editor):
    TeamUsage = apps.get_model("teams", "TeamUsage")
    TeamMonthUsage = apps.get_model("teams", "TeamMonthUsage")
    totals = (
        TeamUsage.objects.annotate(month=TruncMonth("day"))
        .values("team_id", "user_id", "month")
        .annotate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
        .order_by()
    )
    TeamMonthUsage.objects.bulk_create(
        (
            TeamMonthUsage(
                team_id=row["team_id"],
                user_id=row["user_id"],
                month=row["month"],
                prompt_tokens=row["prompt"],
                completion_tokens=row["completion"],
            )
            for row in totals.iterator()
        ),
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("teams", "0020_budget_notice_per_budget"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="TeamMonthUsage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("month", models.DateField()),
                ("prompt_tokens", models.PositiveBigIntegerField(default=0)),
                ("completion_tokens", models.PositiveBigIntegerField(default=0)),
                (
                    "team",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="teams.team",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("team", "month", "user"), name="team_month_usage_unique"
                    )
                ],
            },
        ),
        migrations.RunPython(add_up, migrations.RunPython.noop),
    ]
