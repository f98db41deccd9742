"""The yikatong server: aiohttp application on uvloop, configuration, lifecycle,
database pool and migrations, metrics, structured logs and the `yikatong` CLI.

`engine` is the only package that wires HTTP, the database and the HSM together; it
may import every other production package and is imported by none of them.
"""

__version__ = "0.1.0"
