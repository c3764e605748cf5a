from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('taskchan', '0005_cancel_permission'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='queueoverview',
            options={
                'default_permissions': (),
                'managed': False,
                'permissions': [
                    ('view_queue_overview', 'Can view the queue overview'),
                    ('cancel_message', 'Can cancel queued and running messages'),
                    ('pause_channel', 'Can pause and resume channels'),
                ],
                'verbose_name': 'queue overview',
                'verbose_name_plural': 'queue overview',
            },
        ),
    ]
