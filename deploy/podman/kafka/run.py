#!/usr/local/python/bin/python3
"""Configure and start the broker as the official apache/kafka image's /etc/kafka/docker/run does.

Each KAFKA_* variable is a server property: KAFKA_ dropped, lower case, `___` for `-`,
`__` for `_`, `_` for `.` (KAFKA_NODE_ID is node.id). Unset ones take the official image's
defaults (docker/resources/common-scripts/configureDefaults), CLUSTER_ID included, and
the storage is formatted once (format --ignore-formatted).
"""
import os
import subprocess

DEFAULTS = {
    "CLUSTER_ID": "5L6g3nShT-eMCtK--X86sw",
    "KAFKA_NODE_ID": "1",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT",
    "KAFKA_LISTENERS": "PLAINTEXT://localhost:29092,CONTROLLER://localhost:29093,PLAINTEXT_HOST://0.0.0.0:9092",
    "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://localhost:29092,PLAINTEXT_HOST://localhost:9092",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:29093",
    "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
    "KAFKA_LOG_DIRS": "/tmp/kraft-combined-logs",
}
# Variables of the scripts, not properties.
NOT_PROPERTIES = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_LOG4J_OPTS",
                  "KAFKA_JMX_OPTS", "KAFKA_VERSION", "KAFKA_DEBUG", "KAFKA_GC_LOG_OPTS"}
env = {**DEFAULTS, **os.environ}
properties = {}
for name, value in env.items():
    if name.startswith("KAFKA_") and name not in NOT_PROPERTIES:
        key = name[len("KAFKA_"):].lower().replace("___", "\0").replace("__", "\1").replace("_", ".")
        properties[key.replace("\0", "-").replace("\1", "_")] = value
config = "/opt/kafka/config/server.properties"
with open(config, "w") as out:
    out.writelines(f"{key}={value}\n" for key, value in sorted(properties.items()))
java = [f"{os.environ['JAVA_HOME']}/bin/java", "-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties",
        "-cp", "/opt/kafka/libs/*"]
subprocess.run([*java, "kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", env["CLUSTER_ID"],
                "-c", config], check=True)
heap = env.get("KAFKA_HEAP_OPTS", "-Xmx1G -Xms1G").split()
os.execv(java[0], [java[0], *heap, "-XX:+UseG1GC", *env.get("KAFKA_OPTS", "").split(), "-Dkafka.root.level=INFO",
                   *java[1:], "kafka.Kafka", config])
