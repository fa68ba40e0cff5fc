"""Campaigns speak in codes and keep each contact's list columns.

campaign_contact.error_code / error_params: why a message failed or was
skipped, as a refusal code (storage.send.REFUSALS) and its parameters, which
the dashboard turns into a sentence in the page's language.
campaign_contact.fields: the contact's columns of the uploaded list (JSON),
which fill the merge fields ({nome}) of the campaign's text when it is sent.
campaign_log.params and campaign.state_detail: a log line's and a paused
campaign's reason as parameters, for the same sentences.
"""
from peewee import CharField, TextField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("campaign_contact", "error_code", CharField(null=True)),
        migrator.add_column("campaign_contact", "error_params", TextField(null=True)),
        migrator.add_column("campaign_contact", "fields", TextField(null=True)),
        migrator.add_column("campaign_log", "params", TextField(null=True)),
        migrator.add_column("campaign", "state_detail", TextField(null=True)),
    )
