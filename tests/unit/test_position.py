"""BinlogPosition is ordered by (file number, pos) everywhere, also past binlog.999999."""

from cdc.model import BinlogPosition as P
from cdc.rules import document_version


def test_order_follows_the_file_number_not_the_name_as_text():
    # As text "binlog.1000000" < "binlog.999999"; the server writes 1000000 after 999999.
    assert P("binlog.999999", 9000) < P("binlog.1000000", 4)
    assert P("binlog.1000000", 4) > P("binlog.999999", 9000)
    assert max(P("binlog.999999", 9000), P("binlog.1000000", 4)) == P("binlog.1000000", 4)
    assert sorted([P("binlog.1000001", 4), P("binlog.999999", 4), P("binlog.1000000", 4)]) == [
        P("binlog.999999", 4), P("binlog.1000000", 4), P("binlog.1000001", 4)]


def test_order_within_one_file_is_by_offset():
    assert P("binlog.000003", 157) < P("binlog.000003", 2000) <= P("binlog.000003", 2000)
    assert not P("binlog.000003", 2000) < P("binlog.000003", 2000)


def test_document_versions_grow_across_the_rollover():
    assert document_version(P("binlog.999999", 9000)) < document_version(P("binlog.1000000", 4))


def test_replay_bound_across_the_rollover():
    # A replay that ends at binlog.1000000:500 must not stop at binlog.999999:4.
    end = P("binlog.1000000", 500)
    assert not P("binlog.999999", 4) >= end
    assert P("binlog.1000000", 500) >= end
