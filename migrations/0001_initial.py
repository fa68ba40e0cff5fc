"""The schema of zaphook as of this release: every table, frozen here, made by migration 1.

Generated with playhouse.migrations.template from models.MODELS. The Python-side
defaults (utcnow for the *_at columns) live in the models, not in the tables.
A database made before migrations existed is brought to this schema by
models.migrate_schema and this migration recorded as applied, not run.
"""
from peewee import (BigIntegerField, BooleanField, CharField, DateTimeField, DoubleField, ForeignKeyField, IntegerField,
                    Model, TextField)


def up(migrator, db):
    class Client(Model):
        name = CharField(unique=True)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'client'
            legacy_table_names = False
    db.create_tables([Client])

    class Instance(Model):
        client = ForeignKeyField(Client)
        provider = CharField()
        external_id = CharField()
        name = CharField(null=True)
        own_jid = CharField(null=True)
        connection_state = CharField(default='unknown')
        state_reason = CharField(null=True)
        state_changed_at = DateTimeField(null=True)
        connected_at = DateTimeField(null=True)
        disconnected_at = DateTimeField(null=True)
        last_event_at = DateTimeField(null=True)
        api_token = TextField(null=True)
        api_base_url = CharField(null=True)
        created_at = DateTimeField()
        health_day = CharField(null=True)
        sent_today = IntegerField(default=0)
        delivered_today = IntegerField(default=0)
        read_today = IntegerField(default=0)
        failed_today = IntegerField(default=0)
        consecutive_errors = IntegerField(default=0)
        health_score = IntegerField(default=100)
        class Meta:
            database = db
            table_name = 'instance'
            legacy_table_names = False
            indexes = ((('provider', 'external_id'), True),)
    db.create_tables([Instance])

    class Campaign(Model):
        name = CharField()
        instance = ForeignKeyField(Instance, on_delete='CASCADE')
        text = TextField()
        state = CharField(index=True, default='draft')
        state_reason = TextField(null=True)
        total_contacts = IntegerField(default=0)
        sent_count = IntegerField(default=0)
        delivered_count = IntegerField(default=0)
        read_count = IntegerField(default=0)
        failed_count = IntegerField(default=0)
        replied_count = IntegerField(default=0)
        skipped_count = IntegerField(default=0)
        consecutive_errors = IntegerField(default=0)
        created_at = DateTimeField()
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'campaign'
            legacy_table_names = False
    db.create_tables([Campaign])

    class CampaignContact(Model):
        campaign = ForeignKeyField(Campaign, on_delete='CASCADE')
        instance = ForeignKeyField(Instance, on_delete='CASCADE')
        phone = CharField()
        name = CharField(null=True)
        state = CharField(default='pending')
        whatsapp_message_id = CharField(null=True)
        sending_at = DateTimeField(null=True)
        sent_at = DateTimeField(null=True)
        delivered_at = DateTimeField(null=True)
        read_at = DateTimeField(null=True)
        failed_at = DateTimeField(null=True)
        replied_at = DateTimeField(null=True)
        error = TextField(null=True)
        reply = TextField(null=True)
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'campaign_contact'
            legacy_table_names = False
            indexes = ((('campaign', 'phone'), True), (('campaign', 'state'), False), (('instance', 'whatsapp_message_id'), False), (('instance', 'phone'), False))
    db.create_tables([CampaignContact])

    class WebhookEvent(Model):
        request_id = CharField()
        received_at = DateTimeField()
        method = CharField(default='POST')
        route = CharField()
        remote_addr = CharField(null=True)
        headers = TextField(default='{}')
        content_type = CharField(null=True)
        body = TextField(null=True)
        body_encoding = CharField(default='utf-8')
        body_size = IntegerField(default=0)
        provider = CharField(null=True)
        kind = CharField(null=True)
        event_name = CharField(null=True)
        outcome = CharField(index=True, default='stored')
        error = TextField(null=True)
        http_status = IntegerField(default=200)
        instance = ForeignKeyField(Instance, null=True, on_delete='SET NULL')
        message_id = CharField(index=True, null=True)
        dedupe_key = CharField(unique=True, null=True)
        duplicate_of = ForeignKeyField('self', null=True, on_delete='SET NULL')
        processed_at = DateTimeField(null=True)
        replay_count = IntegerField(default=0)
        search_text = TextField(null=True)
        class Meta:
            database = db
            table_name = 'webhook_event'
            legacy_table_names = False
    db.create_tables([WebhookEvent])

    class CampaignLog(Model):
        campaign = ForeignKeyField(Campaign, on_delete='CASCADE')
        contact = ForeignKeyField(CampaignContact, null=True, on_delete='CASCADE')
        action = CharField()
        at = DateTimeField()
        whatsapp_message_id = CharField(null=True)
        detail = TextField(null=True)
        event = ForeignKeyField(WebhookEvent, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'campaign_log'
            legacy_table_names = False
            indexes = ((('campaign', 'id'), False),)
    db.create_tables([CampaignLog])

    class Chat(Model):
        instance = ForeignKeyField(Instance, on_delete='CASCADE')
        jid = CharField()
        name = CharField(null=True)
        is_group = BooleanField(default=False)
        kind = CharField(null=True)
        last_message_at = DateTimeField(null=True)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'chat'
            legacy_table_names = False
            indexes = ((('instance', 'jid'), True),)
    db.create_tables([Chat])

    class Contact(Model):
        instance = ForeignKeyField(Instance, on_delete='CASCADE')
        jid = CharField()
        name = CharField(null=True)
        phone = CharField(null=True)
        profile_picture_url = TextField(null=True)
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'contact'
            legacy_table_names = False
            indexes = ((('instance', 'jid'), True),)
    db.create_tables([Contact])

    class DashboardSession(Model):
        key = CharField(unique=True)
        created_at = DateTimeField()
        expires_at = DateTimeField(index=True)
        class Meta:
            database = db
            table_name = 'dashboard_session'
            legacy_table_names = False
    db.create_tables([DashboardSession])

    class JidAlias(Model):
        instance = ForeignKeyField(Instance, on_delete='CASCADE')
        alias_jid = CharField()
        phone_jid = CharField()
        learnt_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'jid_alias'
            legacy_table_names = False
            indexes = ((('instance', 'alias_jid'), True),)
    db.create_tables([JidAlias])

    class Message(Model):
        instance = ForeignKeyField(Instance, on_delete='CASCADE')
        chat = ForeignKeyField(Chat, on_delete='CASCADE')
        provider = CharField()
        provider_message_id = CharField()
        direction = CharField()
        from_me = BooleanField()
        sender_jid = CharField(null=True)
        sender_name = CharField(null=True)
        type = CharField()
        raw_type = CharField(null=True)
        text = TextField(null=True)
        caption = TextField(null=True)
        timestamp = DateTimeField(index=True, null=True)
        status = CharField(default='pending')
        sent_at = DateTimeField(null=True)
        delivered_at = DateTimeField(null=True)
        read_at = DateTimeField(null=True)
        played_at = DateTimeField(null=True)
        failed_at = DateTimeField(null=True)
        error = TextField(null=True)
        quoted_message_id = CharField(null=True)
        forwarded = BooleanField(default=False)
        reaction_to = CharField(null=True)
        reaction_emoji = CharField(null=True)
        latitude = DoubleField(null=True)
        longitude = DoubleField(null=True)
        location_name = CharField(null=True)
        contacts = TextField(null=True)
        interactive_id = CharField(null=True)
        is_voice = BooleanField(default=False)
        edited_at = DateTimeField(null=True)
        deleted_at = DateTimeField(null=True)
        event = ForeignKeyField(WebhookEvent, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'message'
            legacy_table_names = False
            indexes = ((('instance', 'provider_message_id'), True),)
    db.create_tables([Message])

    class MediaFile(Model):
        message = ForeignKeyField(Message, unique=True, on_delete='CASCADE')
        instance = ForeignKeyField(Instance, on_delete='CASCADE')
        media_type = CharField()
        state = CharField(index=True, default='pending')
        mimetype = CharField(null=True)
        file_name = CharField(null=True)
        file_length = BigIntegerField(null=True)
        media_key = CharField(null=True)
        direct_path = TextField(null=True)
        url = TextField(null=True)
        file_sha256 = CharField(null=True)
        file_enc_sha256 = CharField(null=True)
        caption = TextField(null=True)
        width = IntegerField(null=True)
        height = IntegerField(null=True)
        seconds = IntegerField(null=True)
        is_voice = BooleanField(default=False)
        is_animated = BooleanField(default=False)
        media_id = CharField(null=True)
        inline_path = TextField(null=True)
        inline_size = BigIntegerField(null=True)
        inline_sha256 = CharField(null=True)
        local_path = TextField(null=True)
        stored_sha256 = CharField(null=True)
        stored_size = BigIntegerField(null=True)
        attempts = IntegerField(default=0)
        error = TextField(null=True)
        failed_check = CharField(null=True)
        way = CharField(null=True)
        content_key = CharField(null=True)
        next_attempt_at = DateTimeField(null=True)
        lease_owner = CharField(null=True)
        lease_until = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField(index=True)
        class Meta:
            database = db
            table_name = 'media_file'
            legacy_table_names = False
            indexes = ((('content_key', 'state'), False),)
    db.create_tables([MediaFile])

    class MediaAttempt(Model):
        media = ForeignKeyField(MediaFile, on_delete='CASCADE')
        round = IntegerField()
        way = CharField()
        outcome = CharField()
        http_status = IntegerField(null=True)
        error = TextField(null=True)
        size = BigIntegerField(null=True)
        started_at = DateTimeField()
        finished_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'media_attempt'
            legacy_table_names = False
    db.create_tables([MediaAttempt])

    class MessageStatusChange(Model):
        instance = ForeignKeyField(Instance, on_delete='CASCADE')
        provider_message_id = CharField()
        message = ForeignKeyField(Message, null=True, on_delete='CASCADE')
        status = CharField()
        timestamp = DateTimeField()
        error = TextField(null=True)
        event = ForeignKeyField(WebhookEvent, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'message_status_change'
            legacy_table_names = False
            indexes = ((('instance', 'provider_message_id', 'status'), True),)
    db.create_tables([MessageStatusChange])

    class OptOut(Model):
        phone = CharField(unique=True)
        instance = ForeignKeyField(Instance, null=True, on_delete='SET NULL')
        word = CharField(null=True)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'opt_out'
            legacy_table_names = False
    db.create_tables([OptOut])

    class Presence(Model):
        instance = ForeignKeyField(Instance, on_delete='CASCADE')
        chat_jid = CharField()
        participant_jid = CharField(default='')
        state = CharField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'presence'
            legacy_table_names = False
            indexes = ((('instance', 'chat_jid', 'participant_jid'), True),)
    db.create_tables([Presence])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('presence'))
    migrator.migrate(migrator.drop_table('opt_out'))
    migrator.migrate(migrator.drop_table('message_status_change'))
    migrator.migrate(migrator.drop_table('media_attempt'))
    migrator.migrate(migrator.drop_table('media_file'))
    migrator.migrate(migrator.drop_table('message'))
    migrator.migrate(migrator.drop_table('jid_alias'))
    migrator.migrate(migrator.drop_table('dashboard_session'))
    migrator.migrate(migrator.drop_table('contact'))
    migrator.migrate(migrator.drop_table('chat'))
    migrator.migrate(migrator.drop_table('campaign_log'))
    migrator.migrate(migrator.drop_table('webhook_event'))
    migrator.migrate(migrator.drop_table('campaign_contact'))
    migrator.migrate(migrator.drop_table('campaign'))
    migrator.migrate(migrator.drop_table('instance'))
    migrator.migrate(migrator.drop_table('client'))
