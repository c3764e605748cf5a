# The columns do not change (sealed values are JSON and text as before): only
# the fields' Python class does, so the database is left alone (no table
# rebuild on SQLite for a large dead-letter table).

from django.db import migrations

import taskchan.sealed


class Migration(migrations.Migration):
    dependencies = [
        ("taskchan", "0003_failedmessage_ran_under_celery"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="failedmessage",
                    name="content",
                    field=taskchan.sealed.SealedJSONField(
                        blank=True, null=True, sealed_unless="DEAD_LETTERS_DECRYPTED"
                    ),
                ),
                migrations.AlterField(
                    model_name="failedmessage",
                    name="original_content",
                    field=taskchan.sealed.SealedJSONField(
                        blank=True,
                        help_text="the content as it failed, when it was edited before a retry",
                        null=True,
                        sealed_unless="DEAD_LETTERS_DECRYPTED",
                    ),
                ),
                migrations.AlterField(
                    model_name="failedmessage",
                    name="raw",
                    field=taskchan.sealed.SealedTextField(
                        blank=True,
                        help_text="the stored message as received, when it could not be read",
                        sealed_unless="DEAD_LETTERS_DECRYPTED",
                    ),
                ),
                migrations.AlterField(
                    model_name="outboxmessage",
                    name="envelope",
                    field=taskchan.sealed.SealedTextField(),
                ),
            ]
        )
    ]
