from django.db import migrations, models


def invite_members_of_private_rooms(apps, schema_editor):
    # Until now every member of a private room was there by invitation (or as its creator):
    # they keep their access. Members of public rooms are only readers with a read marker.
    Membership = apps.get_model("chat", "Membership")
    Membership.objects.filter(room__private=True).update(invited=True)


class Migration(migrations.Migration):
    dependencies = [("chat", "0003_api_token")]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="invited",
            field=models.BooleanField(
                default=False,
                help_text="May enter the room while it is private. Joining a public room does not invite.",
            ),
        ),
        migrations.RunPython(invite_members_of_private_rooms, migrations.RunPython.noop),
    ]
