"""Kafka mode's configuration: the keys docs/kafka.md "Kafka mode" lists, and the settings cdc will not let go of."""

import pytest
import yaml

from cdc.config import load_config
from cdc.errors import ConfigError
from cdc.kafka.client import CONSUMER_FIXED, PRODUCER_FIXED, _settings


def config(tmp_path, extra: dict):
    path = tmp_path / "cdc.yml"
    path.write_text(yaml.safe_dump({"mysql": {"user": "cdc", "server_id": 5}, **extra}))
    return load_config(str(path))


def test_defaults_keep_single_process_mode(tmp_path):
    c = config(tmp_path, {})
    assert c.destination == "elasticsearch"
    assert (c.kafka.topic, c.kafka.partitions, c.kafka.format, c.kafka.group_id) == ("cdc.actions", 12, "cdc",
                                                                                      "cdc-sink")


def test_kafka_destination_and_settings(tmp_path):
    c = config(tmp_path, {"destination": "kafka", "kafka": {
        "bootstrap_servers": "b1:9092,b2:9092", "topic": "shop", "format": "debezium", "partitions": 3,
        "producer": {"security.protocol": "SASL_SSL", "linger.ms": 20}}})
    assert c.destination == "kafka" and c.kafka.format == "debezium" and c.kafka.partitions == 3
    settings = _settings(c.kafka, c.kafka.producer, PRODUCER_FIXED, "producer")
    assert settings["bootstrap.servers"] == "b1:9092,b2:9092" and settings["linger.ms"] == 20
    assert settings["enable.idempotence"] is True and settings["acks"] == "all"


@pytest.mark.parametrize("extra", [{"destination": "kafkaa"}, {"kafka": {"format": "avro"}},
                                   {"kafka": {"partitions": 0}}, {"kafka": {"topics": "x"}}])
def test_bad_kafka_config_is_refused(tmp_path, extra):
    with pytest.raises(ConfigError):
        config(tmp_path, extra)


@pytest.mark.parametrize("side, fixed, key, value", [
    ("producer", PRODUCER_FIXED, "enable.idempotence", False),
    ("producer", PRODUCER_FIXED, "acks", 1),
    ("consumer", CONSUMER_FIXED, "enable.auto.commit", True),
])
def test_the_guarantees_cannot_be_configured_away(tmp_path, side, fixed, key, value):
    c = config(tmp_path, {"kafka": {side: {key: value}}})
    with pytest.raises(ConfigError, match=key):
        _settings(c.kafka, getattr(c.kafka, side), fixed, side)


def test_an_incremental_rebalance_is_refused(tmp_path):
    from cdc.kafka.client import ActionConsumer

    c = config(tmp_path, {"kafka": {"consumer": {"partition.assignment.strategy": "cooperative-sticky"}}})
    with pytest.raises(ConfigError, match="eager"):
        ActionConsumer(c.kafka, lambda p: None, lambda p: None)
    c = config(tmp_path, {"kafka": {"consumer": {"group.protocol": "consumer"}}})
    with pytest.raises(ConfigError, match="group.protocol"):
        _settings(c.kafka, c.kafka.consumer, CONSUMER_FIXED, "consumer")


def test_the_compose_files_kafka_config_validates_and_the_writers_use_it(monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("CDC_MYSQL_PASSWORD", "secret")
    c = load_config(root / "deploy" / "docker" / "cdc-kafka.yml")
    assert c.destination == "kafka" and c.kafka.bootstrap_servers == "kafka:9092"
    compose = yaml.safe_load((root / "docker-compose.kafka.yml").read_text())
    sink = compose["services"]["sink"]
    assert sink["command"][0] == "sink" and "./deploy/docker/cdc-kafka.yml:/etc/cdc/cdc.yml:ro" in sink["volumes"]
    assert compose["services"]["cdc"]["volumes"] == ["./deploy/docker/cdc-kafka.yml:/etc/cdc/cdc.yml:ro"]
    unit = (root / "deploy" / "systemd" / "cdc-sink.service").read_text()
    assert "ExecStart=/opt/cdc/bin/cdc sink --config /etc/cdc/cdc.yml" in unit and "Type=notify" in unit
