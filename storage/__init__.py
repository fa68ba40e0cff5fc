"""File and network work: everything that touches the disk or another server."""
