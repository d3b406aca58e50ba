"""A budget notice is once a month per threshold of each budget: a changed budget is told again."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("teams", "0019_admin_identity_audit_action"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="budgetnotice",
            name="budget_notice_once_a_month",
        ),
        migrations.AddConstraint(
            model_name="budgetnotice",
            constraint=models.UniqueConstraint(
                fields=("team", "month", "budget", "percent"), name="budget_notice_once_a_month"
            ),
        ),
    ]
