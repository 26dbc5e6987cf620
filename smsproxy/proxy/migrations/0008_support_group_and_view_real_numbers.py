"""The `view_real_numbers` permission, and a "Support (read-only)" group without it.

The group may look at conversations, participants, messages, numbers, provisioning jobs and
events in the admin, with real numbers masked; it changes nothing.
"""

from django.db import migrations

SUPPORT_GROUP = "Support (read-only)"

# (app label, model name) the group may view.
SUPPORT_VIEWS = [
    ("proxy", "conversation"),
    ("proxy", "participant"),
    ("proxy", "message"),
    ("proxy", "messagepart"),
    ("proxy", "inboundpart"),
    ("proxy", "event"),
    ("numbers", "virtualnumber"),
    ("numbers", "provisioningjob"),
]


def support_group_create(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are created after all migrations have run; this one needs them now.
    for label in {label for label, _ in SUPPORT_VIEWS}:
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=SUPPORT_GROUP)
    for label, model in SUPPORT_VIEWS:
        group.permissions.add(
            Permission.objects.get(content_type__app_label=label, codename=f"view_{model}")
        )


def support_group_delete(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=SUPPORT_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("numbers", "0003_assigned_participants"),
        ("proxy", "0007_events"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="participant",
            options={
                "ordering": ["conversation_id", "id"],
                "permissions": [
                    ("view_real_numbers", "Can see people's real numbers in the admin")
                ],
            },
        ),
        migrations.RunPython(support_group_create, support_group_delete),
    ]
