"""`cdc status`: where a daemon stands, from outside it.

The checkpoint file gives the position, GTID and age, and its lock tells
whether a daemon is running. Lag comes from the running daemon's /metrics when
metrics are enabled (seconds behind the source, as the daemon measures it);
otherwise from MySQL: how many binlog files and bytes the server has written
past the checkpoint. Nothing here writes anything or registers as a replica.
"""

from __future__ import annotations


import re
import time
from typing import Any

from cdc.stream.checkpoint import FileCheckpointStore
from cdc.config import Config
from cdc.errors import CdcError
from cdc.model import BinlogPosition
from cdc.native import AVAILABLE as NATIVE_AVAILABLE

Report = dict[str, Any]


def metrics_url(config: Config) -> str:
    host = config.metrics.host
    if host in ("0.0.0.0", "", "::"):  # listening everywhere: loopback reaches it
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.metrics.port}/metrics"


def gather(config: Config, timeout: float = 3.0) -> Report:
    """Everything `cdc status` shows; raises CheckpointError for an unreadable checkpoint."""
    store = FileCheckpointStore(config.resolve(config.checkpoint.path))
    checkpoint = store.load()
    report: Report = {
        "checkpoint": None,
        "daemon_running": store.is_locked_by_other(),
        "lag": {"source": None, "seconds_behind_source": None, "read_position": None, "server_position": None,
                "files_behind": None, "bytes_behind": None},
        # An unfinished snapshot as the checkpoint records it (cdc/copy/snapshot.py), else null.
        "snapshot": getattr(checkpoint, "snapshot", None),
        # Unfinished rebuilds (`cdc rebuild`, or `cdc run` with indices.on_change: rebuild), added by
        # cdc/app/position.py (the rebuild state is cdc/copy's); [] when none is under way.
        "rebuilds": [],
        "dead_letters": None,
        # docs/row-path.md "Row path": the configured path, whether the native module is installed, and
        # (from a running daemon's metrics) each table's path, with why a table falls back.
        "row_path": {"config": config.row_path, "native_module": NATIVE_AVAILABLE,
                     "tables": None},
        # `cdc sink` (README: Kafka mode): each assigned partition's lag and the stalled ones, from
        # the writer's metrics when they answer at metrics.port; else null.
        "kafka": None,
        # A running daemon's writer, from its metrics: {"waiting": bool, "reason": what failed}, so
        # an operator sees why the checkpoint holds (an outage, a read-only index) without its logs.
        "writer": None,
        "problems": [],
    }
    report["dead_letters"] = _dead_letters(config, report["problems"])
    if checkpoint is not None:
        report["checkpoint"] = {
            "position": str(checkpoint.position), "file": checkpoint.position.file, "pos": checkpoint.position.pos,
            "gtid": checkpoint.gtid, "saved_at": checkpoint.saved_at or None,
            "age_seconds": round(max(0.0, time.time() - checkpoint.saved_at), 3) if checkpoint.saved_at else None,
        }
    if config.metrics.enabled and report["daemon_running"]:
        _lag_from_metrics(config, report, checkpoint.position if checkpoint else None, timeout)
    elif config.metrics.enabled and config.destination == "elasticsearch":
        _sink_from_metrics(config, report, timeout)
    if report["lag"]["source"] is None and checkpoint is not None:
        _lag_from_mysql(config, report, checkpoint.position)
    return report


def _dead_letters(config: Config, problems: list[str]) -> int | None:
    """Entries in the dead-letter store; None when it is not in use and holds nothing."""
    from cdc.stream.deadletter import DeadLetterStore

    path = config.resolve(config.dead_letter.path)
    if not path.exists():
        return 0 if config.dead_letter.on_rejected == "dead_letter" else None
    try:
        return DeadLetterStore(path).count()
    except CdcError as exc:
        problems.append(f"cannot count dead letters: {exc}")
        return None


def _lag_from_metrics(config: Config, report: Report, checkpoint: BinlogPosition | None, timeout: float) -> None:
    from cdc.ops.metrics import read_metrics  # prometheus_client is only needed here

    url = metrics_url(config)
    try:
        samples = read_metrics(url, timeout)
    except (OSError, ValueError) as exc:
        report["problems"].append(f"the daemon's metrics at {url} did not answer ({exc}); "
                                  "lag is measured from MySQL instead")
        return

    def one(name: str, **labels: str) -> float | None:
        return next((v for lbl, v in samples.get(name, []) if lbl == labels), None)

    paths = samples.get("cdc_row_path", [])
    if paths:
        report["row_path"]["tables"] = {lbl["table"]: lbl["path"] + (f": {lbl['reason']}" if lbl.get("reason") else "")
                                        for lbl, _ in paths}
    waiting = samples.get("cdc_sink_waiting", [])
    if waiting:
        labels, value = waiting[0]
        report["writer"] = {"waiting": bool(value), "reason": labels.get("reason") or None}
    lag = report["lag"]
    lag["source"] = url
    lag["seconds_behind_source"] = one("cdc_seconds_behind_source")
    index, offset = one("cdc_binlog_file_index", stage="read"), one("cdc_binlog_offset_bytes", stage="read")
    if index is not None and offset is not None:
        lag["read_position"] = str(BinlogPosition(_file_named(checkpoint, int(index)), int(offset)))


def _sink_from_metrics(config: Config, report: Report, timeout: float) -> None:
    """A `cdc sink` writer holds no checkpoint lock: it is known by its partition metrics, if they answer."""
    from cdc.ops.metrics import read_metrics

    try:
        samples = read_metrics(metrics_url(config), timeout)
    except (OSError, ValueError):
        return  # nothing listening: no writer with this config runs here
    lag = samples.get("cdc_kafka_partition_lag")
    if lag is None:
        return
    stalled = {(lbl["topic"], lbl["partition"]) for lbl, v in samples.get("cdc_kafka_partition_stalled", []) if v}
    report["kafka"] = {
        "source": metrics_url(config),
        "partitions": [{"topic": lbl["topic"], "partition": int(lbl["partition"]), "lag": int(v),
                        "stalled": (lbl["topic"], lbl["partition"]) in stalled}
                       for lbl, v in sorted(lag, key=lambda s: (s[0]["topic"], int(s[0]["partition"])))],
    }


def _file_named(like: BinlogPosition | None, index: int) -> str:
    """The binlog file with this number, named like the checkpoint's (binlog.000042)."""
    match = re.fullmatch(r"(.*\.)(\d+)", like.file) if like else None
    if not match:
        return str(index)
    return f"{match.group(1)}{index:0{len(match.group(2))}d}"


def _lag_from_mysql(config: Config, report: Report, checkpoint: BinlogPosition) -> None:
    from cdc.mysql.server import Database

    try:
        db = Database(config.mysql)
    except CdcError as exc:
        report["problems"].append(f"cannot measure lag: {exc}")
        return
    try:
        status = db.binary_log_status()
        server = BinlogPosition(status["File"], int(status["Position"]))
        logs = [(r["Log_name"], int(r["File_size"])) for r in db.rows("SHOW BINARY LOGS")]
    except Exception as exc:  # a report, not a run: any failure here is a note (pymysql stays in cdc/mysql/server.py)
        report["problems"].append(f"cannot measure lag: {type(exc).__name__}: {exc}")
        return
    finally:
        db.close()
    files, size = bytes_behind(checkpoint, server, logs)
    report["lag"].update(source="mysql", server_position=str(server), files_behind=files, bytes_behind=size)
    if files is None:
        report["problems"].append(f"the checkpoint's binlog file {checkpoint.file} is not on the server "
                                  f"(it has {logs[0][0] if logs else 'none'} to {server.file})")


def bytes_behind(checkpoint: BinlogPosition, server: BinlogPosition,
                 logs: list[tuple[str, int]]) -> tuple[int | None, int | None]:
    """(binlog files, bytes) the server has written after `checkpoint`; (None, None) if it cannot tell.

    `logs` is SHOW BINARY LOGS: (file name, size) in order.
    """
    if checkpoint.file == server.file:
        return 0, max(0, server.pos - checkpoint.pos)
    names = [name for name, _ in logs]
    if checkpoint.file not in names or server.file not in names:
        return None, None
    first, last = names.index(checkpoint.file), names.index(server.file)
    if last < first:  # the checkpoint is ahead of this server: another server's binlog
        return None, None
    sizes = dict(logs)
    between = sum(sizes[name] for name in names[first + 1:last])
    return last - first, max(0, sizes[checkpoint.file] - checkpoint.pos) + between + server.pos


def format_text(report: Report) -> str:
    """The human form of `report`."""
    lines = []
    cp = report["checkpoint"]
    if cp is None:
        lines.append("checkpoint    none (cdc has not started with this config yet)")
    else:
        age = f"saved {_duration(cp['age_seconds'])} ago" if cp["age_seconds"] is not None else "never saved"
        lines.append(f"checkpoint    {cp['position']}  ({age})")
        lines.append(f"gtid          {cp['gtid'] or '-'}")
    lines.append("daemon        " + ("running (it holds the checkpoint lock)" if report["daemon_running"]
                                     else "not running"))
    lag = report["lag"]
    if lag["source"] == "mysql":
        if lag["files_behind"] is None:
            lines.append(f"lag           unknown (server at {lag['server_position']})")
        else:
            files = f", {lag['files_behind']} binlog file(s) on" if lag["files_behind"] else ""
            lines.append(f"lag           {lag['bytes_behind']:,} bytes of binlog behind the server at "
                         f"{lag['server_position']}{files}")
    elif lag["source"] is not None:
        behind = lag["seconds_behind_source"]
        text = f"{behind:.1f} s behind the source" if behind is not None else "unknown (no event read yet)"
        read = f", read up to {lag['read_position']}" if lag["read_position"] else ""
        lines.append(f"lag           {text}{read} (from {lag['source']})")
    else:
        lines.append("lag           unknown")
    writer = report.get("writer")
    if writer is not None and writer["waiting"]:
        lines.append(f"writer        WAITING to retry: {writer['reason']}")
    elif writer is not None:
        lines.append("writer        not waiting")
    lines.append("snapshot      " + ("in progress (see --json)" if report["snapshot"] else "none in progress"))
    for rebuild in report.get("rebuilds") or ():
        lines.append(f"rebuild       {rebuild['alias']} -> {rebuild['index']}: {rebuild['phase']} (see --json)")
    lines.append("dead letters  " + ("none (dead_letter.on_rejected is stop)" if report["dead_letters"] is None
                                     else f"{report['dead_letters']} (cdc dlq lists them)"))
    kafka = report.get("kafka")
    if kafka is not None:
        parts = kafka["partitions"]
        lines.append(f"kafka         writer of {len(parts)} partition(s), {sum(p['lag'] for p in parts):,} message(s) "
                     f"behind (from {kafka['source']})")
        stalled = [p for p in parts if p["stalled"]]
        if stalled:
            lines.append("              STALLED: " + ", ".join(f"{p['topic']}[{p['partition']}] ({p['lag']:,} waiting)"
                                                         for p in stalled) +
                         " assigned to this writer but not read (docs/kafka.md)")
    rp = report.get("row_path")
    if rp is None:
        pass
    elif rp["config"] == "python" or not rp["native_module"]:
        lines.append("row path      python" + (" (row_path: python)" if rp["config"] == "python"
                                               else " (the native module is not installed)"))
    else:
        tables = rp["tables"] or {}
        fallback = {t: state for t, state in tables.items() if state != "native"}
        lines.append(f"row path      native where the rules allow (row_path: {rp['config']})" +
                     ("" if rp["tables"] is not None else "; per table: from a running daemon's metrics"))
        lines.extend(f"              {t}: {state}" for t, state in sorted(fallback.items()))
    lines.extend(f"note: {problem}" for problem in report["problems"])
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
