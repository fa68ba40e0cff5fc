"""Three columns on webhook_event for the events page: what zaphook answered, what the request was, what it replays.

``response``: the JSON body zaphook answered with (its status code is ``http_status``), kept at
acknowledgement time so the page can show the answer next to the request even after the applier
changed the outcome. ``summary``: a few words of what the request was (kind, text or status, chat),
made from the handler's result when the request is stored, so the list never reads bodies.
``replay_of_id``: the event a replay with changes was made from. All three are NULL on older rows.
"""
from peewee import ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    class WebhookEvent(Model):
        id = IntegerField(primary_key=True)

        class Meta:
            database = db
            table_name = "webhook_event"
            legacy_table_names = False

    migrator.migrate(
        migrator.add_column("webhook_event", "response", TextField(null=True)),
        migrator.add_column("webhook_event", "summary", TextField(null=True)),
        migrator.add_column("webhook_event", "replay_of_id",
                            ForeignKeyField(WebhookEvent, null=True, on_delete="SET NULL", field=WebhookEvent.id)),
    )
