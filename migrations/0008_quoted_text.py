"""message.quoted_text: what a reply's payload shows of the message it quotes.

The quoted message's id was kept already (quoted_message_id); its text is kept
too, so the dashboard can show the quote when the quoted message itself was
never stored (it came before zaphook was pointed at the provider).
"""
from peewee import TextField


def up(migrator, db):
    migrator.migrate(migrator.add_column("message", "quoted_text", TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("message", "quoted_text"))
