"""cdc: keep Elasticsearch in sync with MySQL/MariaDB by reading the binlog."""

__version__ = "0.1.0"
