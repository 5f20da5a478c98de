"""The test servers are real and wired as cdc needs them: a row written to MariaDB
comes back as a binlog row event with column names and lands in Elasticsearch."""

from harness import Admin
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import XidEvent
from pymysqlreplication.row_event import WriteRowsEvent


def test_row_travels_from_mariadb_binlog_to_elasticsearch(servers, db, database, es, index_prefix):
    db.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50), price DECIMAL(10,2))")
    file, pos = db.execute("SHOW MASTER STATUS")[0][:2]
    db.execute("INSERT INTO items VALUES (1, 'apple', 1.25)")

    stream = BinLogStreamReader(
        connection_settings={"host": servers.mariadb_host, "port": servers.mariadb_port,
                             "user": servers.cdc_user, "passwd": servers.cdc_password},
        server_id=991, resume_stream=True, log_file=file, log_pos=pos, blocking=False,
        only_events=[WriteRowsEvent, XidEvent], only_schemas=[database],
    )
    rows: list[dict] = []
    try:
        for event in stream:
            if isinstance(event, WriteRowsEvent):
                rows.extend(r["values"] for r in event.rows)
            if isinstance(event, XidEvent) and rows:
                break
    finally:
        stream.close()
    assert rows == [{"id": 1, "name": "apple", "price": rows[0]["price"]}]
    assert str(rows[0]["price"]) == "1.25"

    es.index(index=f"{index_prefix}-items", id="1", document={"name": rows[0]["name"]}, refresh="wait_for")
    assert es.get(index=f"{index_prefix}-items", id="1")["_source"] == {"name": "apple"}


def test_server_has_the_settings_cdc_needs(db):
    variables = dict(db.execute(
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
        "('log_bin','binlog_format','binlog_row_image','binlog_row_metadata','gtid_strict_mode')"))
    assert variables == {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL",
                         "binlog_row_metadata": "FULL", "gtid_strict_mode": "ON"}


def test_mysql_has_the_settings_cdc_needs_and_users_with_its_default_authentication(mysql_servers):
    """scripts/servers.py mysql_up: Oracle MySQL 9.7 set up like the MariaDB where it matters to cdc."""
    admin = Admin(mysql_servers)
    try:
        assert admin.mysql and admin.execute("SELECT VERSION()")[0][0].startswith("9.7.")
        variables = dict(admin.execute(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin','binlog_format','binlog_row_image',"
            "'binlog_row_metadata','gtid_mode','enforce_gtid_consistency')"))
        assert variables == {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL",
                             "binlog_row_metadata": "FULL", "gtid_mode": "ON", "enforce_gtid_consistency": "ON"}
        # MySQL's default sql_mode, which the tests on MySQL run under (cdc's sessions too).
        assert set(admin.execute("SELECT @@GLOBAL.sql_mode")[0][0].split(",")) >= {
            "ONLY_FULL_GROUP_BY", "STRICT_TRANS_TABLES", "NO_ZERO_IN_DATE", "NO_ZERO_DATE"}
        plugins = dict(admin.execute("SELECT user, plugin FROM mysql.user WHERE host = '127.0.0.1'"))
        assert plugins == {mysql_servers.cdc_user: "caching_sha2_password",
                           mysql_servers.admin_user: "caching_sha2_password"}
    finally:
        admin.close()
