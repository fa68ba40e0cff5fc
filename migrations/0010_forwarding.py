"""Forwarding to the developer's app: destinations, the durable delivery queue, and every attempt.

forward_destination: where to forward (URL, format raw | normalised, filter, signing secret).
forward_delivery: one event to deliver to one destination, with its retry state and lease.
forward_attempt: one HTTP request of a delivery and what the app answered. See forwarding.py.
"""
from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    class WebhookEvent(Model):
        class Meta:
            database = db
            table_name = "webhook_event"
            legacy_table_names = False

    class MediaFile(Model):
        class Meta:
            database = db
            table_name = "media_file"
            legacy_table_names = False

    class ForwardDestination(Model):
        name = CharField(unique=True)
        url = TextField()
        format = CharField(default="raw")
        secret = CharField()
        instance = CharField(null=True)
        provider = CharField(null=True)
        types = TextField(null=True)
        enabled = BooleanField(default=True)
        origin = CharField(default="api")
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "forward_destination"
            legacy_table_names = False

    class ForwardDelivery(Model):
        destination = ForeignKeyField(ForwardDestination, on_delete="CASCADE")
        event = ForeignKeyField(WebhookEvent, null=True, on_delete="CASCADE")
        media = ForeignKeyField(MediaFile, null=True, on_delete="CASCADE")
        type = CharField()
        webhook_id = CharField()
        order_key = CharField()
        payload = TextField(null=True)
        replay = BooleanField(default=False)
        state = CharField(default="pending")
        attempts = IntegerField(default=0)
        next_attempt_at = DateTimeField(null=True)
        lease_owner = CharField(null=True)
        lease_until = DateTimeField(null=True)
        last_status = IntegerField(null=True)
        last_error = TextField(null=True)
        last_error_code = CharField(null=True)
        last_error_params = TextField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        finished_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "forward_delivery"
            legacy_table_names = False
            indexes = (
                (("state", "next_attempt_at"), False),
                (("destination", "order_key", "state"), False),
            )

    class ForwardAttempt(Model):
        delivery = ForeignKeyField(ForwardDelivery, on_delete="CASCADE")
        number = IntegerField()
        outcome = CharField()
        http_status = IntegerField(null=True)
        error = TextField(null=True)
        error_code = CharField(null=True)
        error_params = TextField(null=True)
        response_excerpt = TextField(null=True)
        duration_ms = IntegerField(default=0)
        started_at = DateTimeField()

        class Meta:
            database = db
            table_name = "forward_attempt"
            legacy_table_names = False

    db.create_tables([ForwardDestination, ForwardDelivery, ForwardAttempt])
