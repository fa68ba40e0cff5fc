"""The deployment_fact table: facts every process reads the same, such as the database's own id.

The id is written into MEDIA_DIR as a marker, so a process started with another MEDIA_DIR than the
others is told at start-up (see media.check_media_dir).
"""
from peewee import CharField, Model


def up(migrator, db):
    class DeploymentFact(Model):
        name = CharField(unique=True)
        value = CharField()

        class Meta:
            database = db
            table_name = "deployment_fact"
            legacy_table_names = False

    db.create_tables([DeploymentFact])
