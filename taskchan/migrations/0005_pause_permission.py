from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('taskchan', '0004_sealed_fields'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='queueoverview',
            options={
                'default_permissions': (),
                'managed': False,
                'permissions': [
                    ('view_queue_overview', 'Can view the queue overview'),
                    ('pause_channel', 'Can pause and resume channels'),
                ],
                'verbose_name': 'queue overview',
                'verbose_name_plural': 'queue overview',
            },
        ),
    ]
