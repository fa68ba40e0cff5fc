"""media_file.error_code and error_params: why a download failed, as a code the dashboard translates.

``error`` keeps the English sentence (the API, the CLI and logs read it); the code and its
parameters (JSON) let the page say it in its own language (codes.py).
"""
from peewee import CharField, TextField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("media_file", "error_code", CharField(null=True)),
        migrator.add_column("media_file", "error_params", TextField(null=True)),
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_column("media_file", "error_code"), migrator.drop_column("media_file", "error_params"))
