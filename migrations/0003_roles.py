"""Deployment-wide roles and the campaign send slots.

role_lease: which process is the campaign sender, the tunnel owner and the
webhook registrar, for how long (see roles.py). send_slot: the earliest
moment the deployment, and each instance, may send the next campaign message,
so the campaign rate holds across processes and across a takeover.
"""
from peewee import CharField, DoubleField, Model, TextField


def up(migrator, db):
    class RoleLease(Model):
        name = CharField(primary_key=True)
        holder = CharField()
        expires_at = DoubleField()
        detail = TextField(null=True)

        class Meta:
            database = db
            table_name = "role_lease"
            legacy_table_names = False

    class SendSlot(Model):
        scope = CharField(primary_key=True)
        next_at = DoubleField()

        class Meta:
            database = db
            table_name = "send_slot"
            legacy_table_names = False

    db.create_tables([RoleLease, SendSlot])
