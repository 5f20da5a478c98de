"""The start, failover and epoch policy of `cdc run` (cdc/app/start.py decide_start), branch by branch.

The same policy end to end, on two real MariaDB servers: tests/integration/test_failover.py.
"""

import logging
from typing import Any

import pytest

from cdc.app.start import ServerFacts, decide_start
from cdc.config import parse_config
from cdc.errors import PreflightError, PurgedPositionError, StartPositionError
from cdc.model import BinlogPosition, StartPoint
from cdc.stream.checkpoint import Checkpoint

TABLES = ["shop.a", "shop.b"]
HERE = ServerFacts("mariadb:1", ("binlog.000003", "binlog.000004"))
NEW_PRIMARY = ServerFacts("mariadb:2", ("binlog.000001",))
POS = BinlogPosition("binlog.000004", 1200)


def config(**sections):
    return parse_config({"mysql": {"user": "cdc", "server_id": 9}, **sections})


def checkpoint(**fields):
    values: dict[str, Any] = dict(position=POS, gtid="0-1-50", snapshotted=tuple(TABLES), server="mariadb:1")
    values.update(fields)
    return Checkpoint(**values)


def test_no_checkpoint_starts_at_the_end_and_copies_every_table():
    plan = decide_start(None, HERE, config(), TABLES)
    assert (plan.how, plan.start, plan.fresh_at) == ("fresh", None, None)
    assert plan.copy == tuple(TABLES)
    assert plan.save_now and plan.server == "mariadb:1" and plan.epoch == 0
    assert plan.snapshotted == () and plan.snapshot is None


def test_no_checkpoint_with_snapshot_never_copies_nothing():
    plan = decide_start(None, HERE, config(snapshot={"mode": "never"}), TABLES)
    assert plan.how == "fresh" and plan.copy == ()


def test_no_checkpoint_with_a_configured_position_replays_instead_of_copying():
    plan = decide_start(None, HERE, config(start={"position": "binlog.000003:4"}), TABLES)
    assert plan.fresh_at == BinlogPosition("binlog.000003", 4) and plan.copy == () and plan.save_now
    # The replay stands for a copy: the checkpoint records the tables as copied, so a resume copies none
    # of them (and still copies a table added to the rules later).
    assert plan.snapshotted == tuple(TABLES)
    resumed = decide_start(checkpoint(snapshotted=plan.snapshotted), HERE, config(start={"position": "binlog.000003:4"}),
                           [*TABLES, "shop.c"])
    assert resumed.how == "resume" and resumed.copy == ("shop.c",)


def test_a_configured_position_in_a_purged_file_is_refused():
    with pytest.raises(PurgedPositionError, match="start.position binlog.000001:4: binlog file binlog.000001 is "
                                                  "not on the server \\(oldest is binlog.000003\\)"):
        decide_start(None, HERE, config(start={"position": "binlog.000001:4"}), TABLES)


def test_resume_from_this_servers_checkpoint():
    plan = decide_start(checkpoint(epoch=2), HERE, config(), TABLES)
    assert plan.how == "resume" and plan.start == StartPoint(POS, "0-1-50")
    assert plan.copy == () and not plan.save_now and plan.epoch == 2 and plan.server == "mariadb:1"
    assert (logging.INFO, "resuming from checkpoint binlog.000004:1200 (gtid 0-1-50)") in plan.notes


def test_resume_copies_tables_new_to_the_rules_and_an_unfinished_snapshot():
    unfinished = {"shop.b": {"rows": 10, "last_key": [5], "done": False}}
    plan = decide_start(checkpoint(snapshotted=("shop.a",), snapshot=unfinished), HERE, config(),
                        [*TABLES, "shop.c"])
    assert plan.copy == ("shop.b", "shop.c")
    # snapshot.mode: never copies no new table, but still finishes what was started
    plan = decide_start(checkpoint(snapshotted=("shop.a",), snapshot=unfinished), HERE,
                        config(snapshot={"mode": "never"}), [*TABLES, "shop.c"])
    assert plan.copy == ("shop.b",)


def test_a_format_1_checkpoint_counts_every_table_as_copied():
    plan = decide_start(checkpoint(snapshotted=None), HERE, config(), TABLES)
    assert plan.copy == () and plan.snapshotted == tuple(TABLES)


def test_a_checkpoint_without_a_server_is_taken_as_this_servers():
    plan = decide_start(checkpoint(server=None), HERE, config(), TABLES)
    assert plan.how == "resume" and plan.server is None


def test_a_purged_checkpoint_stops_with_exit_3_and_names_the_fix():
    with pytest.raises(PurgedPositionError) as info:
        decide_start(checkpoint(position=BinlogPosition("binlog.000002", 900)), HERE, config(), TABLES)
    assert info.value.exit_code == 3
    assert "binlog file binlog.000002 (position binlog.000002:900) is no longer on the server (oldest is " \
           "binlog.000003)" in str(info.value)
    assert "cdc run --resnapshot" in str(info.value) and "remove the checkpoint" not in str(info.value)


def test_a_purged_checkpoint_with_when_needed_copies_everything_again_and_keeps_the_epoch():
    plan = decide_start(checkpoint(position=BinlogPosition("binlog.000002", 900), epoch=3), HERE,
                        config(snapshot={"mode": "when_needed"}), TABLES)
    assert plan.how == "fresh" and plan.fresh_at is None and plan.resnapshot
    assert plan.copy == tuple(TABLES) and plan.save_now and plan.epoch == 3
    assert plan.notes[0][0] == logging.WARNING and "copying every table again" in plan.notes[0][1]


def test_resnapshot_starts_afresh_copies_everything_and_keeps_the_epoch():
    # The epoch stays: documents written with it must keep losing to the new copy's writes.
    plan = decide_start(checkpoint(epoch=4), HERE, config(snapshot={"mode": "never"}), TABLES, resnapshot=True)
    assert plan.how == "fresh" and plan.resnapshot and plan.copy == tuple(TABLES) and plan.epoch == 4
    assert plan.server == "mariadb:1" and plan.snapshotted == ()


def test_failover_resumes_by_gtid_raises_the_epoch_and_saves_at_once():
    plan = decide_start(checkpoint(epoch=0), NEW_PRIMARY, config(), TABLES)
    assert plan.how == "failover" and plan.start == StartPoint(POS, "0-1-50", by_gtid=True)
    assert plan.epoch == 1 and plan.server == "mariadb:2" and plan.save_now and plan.refusal is None
    assert plan.copy == ()
    assert plan.notes == ((logging.WARNING, "failover: checkpoint is from mariadb:1, this server is mariadb:2; "
                                            "resuming from GTID 0-1-50 with version epoch 1"),)


def test_a_restart_after_the_failover_switch_resumes_by_gtid_without_raising_the_epoch_again():
    saved = checkpoint(epoch=1, server="mariadb:2", by_gtid=True)
    plan = decide_start(saved, NEW_PRIMARY, config(), TABLES)
    assert plan.how == "failover" and plan.start is not None and plan.start.by_gtid and plan.epoch == 1 and not plan.save_now
    assert plan.notes == ((logging.INFO, "resuming from GTID 0-1-50 after a failover (version epoch 1)"),)


def test_after_the_first_commit_on_the_new_primary_restarts_are_plain_resumes():
    saved = checkpoint(position=BinlogPosition("binlog.000001", 800), epoch=1, server="mariadb:2")
    plan = decide_start(saved, NEW_PRIMARY, config(), TABLES)
    assert plan.how == "resume" and plan.epoch == 1 and plan.start is not None and not plan.start.by_gtid


def test_failover_without_gtid_state_is_refused():
    with pytest.raises(PreflightError, match="no GTID state.*cdc run --resnapshot") as info:
        decide_start(checkpoint(gtid=None), NEW_PRIMARY, config(), TABLES)
    assert info.value.exit_code == 2


def test_the_epoch_is_exhausted_at_127_counting_the_configured_one():
    assert decide_start(checkpoint(epoch=126), NEW_PRIMARY, config(), TABLES).epoch == 127  # the last that fits
    with pytest.raises(PreflightError, match="epoch is exhausted"):
        decide_start(checkpoint(epoch=127), NEW_PRIMARY, config(), TABLES)
    with pytest.raises(PreflightError, match="epoch is exhausted"):
        decide_start(checkpoint(epoch=100), NEW_PRIMARY, config(elasticsearch={"version_epoch": 27}), TABLES)


def test_an_unfinished_snapshot_at_a_failover_is_refused_after_saving_the_raised_epoch():
    # The raised epoch must be saved first: the --resnapshot the message asks for keeps it,
    # and without it the new copy's versions could lose to the old primary's documents.
    unfinished = {"shop.b": {"rows": 10, "last_key": [5], "done": False}}
    plan = decide_start(checkpoint(snapshot=unfinished), NEW_PRIMARY, config(), TABLES)
    assert plan.save_now and plan.epoch == 1 and plan.refusal is not None and "unfinished" in plan.refusal


def test_failover_copies_only_tables_new_to_the_rules():
    plan = decide_start(checkpoint(snapshotted=("shop.a",)), NEW_PRIMARY, config(), TABLES)
    assert plan.copy == ("shop.b",)
    plan = decide_start(checkpoint(snapshotted=()), NEW_PRIMARY, config(), TABLES)
    assert plan.copy == ()  # an empty record counts as "every table copied", as before


@pytest.mark.parametrize("file, why", [
    ("binlog.000099", "is newer than the newest binlog file on the server"),
    ("mysql-bin.000004", "is named unlike the server's binlog files"),
])
def test_a_position_the_server_never_had_is_bad_input_not_a_purge(file, why):
    """A file newer than the server's newest (or named otherwise) cannot have been purged: a typo or
    another server, exit 2, naming the server's oldest and newest files; --resnapshot is no answer."""
    position = BinlogPosition(file, 4)
    starts = [("the checkpoint's position", checkpoint(position=position), {}),
              ("start.position", None, {"start": {"position": f"{file}:4"}})]
    for what, saved, sections in starts:
        for mode in ("initial", "when_needed"):  # when_needed copies again only what was purged
            with pytest.raises(StartPositionError) as info:
                decide_start(saved, HERE, config(snapshot={"mode": mode}, **sections), TABLES)
            assert info.value.exit_code == 2
            assert str(info.value).startswith(
                f"{what} {file}:4: binlog file {file} {why} (it has binlog.000003 to binlog.000004), so it was "
                "not purged: the position is mistyped, or is another server's")


def test_replay_tells_a_purged_file_from_one_the_server_never_had():
    """`cdc replay --from-position` (cdc/app/replay.py): older than the oldest is purged (exit 3)."""
    from cdc.app.replay import check_on_server

    files = ["binlog.000003", "binlog.000004", "binlog.000005", "binlog.000006"]
    check_on_server(BinlogPosition("binlog.000005", 4), files)
    with pytest.raises(StartPositionError) as info:
        check_on_server(BinlogPosition("binlog.000099", 4), files)
    assert info.value.exit_code == 2 and "resnapshot" not in str(info.value)
    assert ("--from-position binlog.000099:4: binlog file binlog.000099 is newer than the newest binlog file on the "
            "server (it has binlog.000003 to binlog.000006), so it was not purged") in str(info.value)
    with pytest.raises(PurgedPositionError) as purged:
        check_on_server(BinlogPosition("binlog.000002", 4), files)
    assert purged.value.exit_code == 3 and "cdc run --resnapshot" in str(purged.value)
    assert "(it has binlog.000003 to binlog.000006): the changes there were purged" in str(purged.value)
