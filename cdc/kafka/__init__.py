"""Kafka mode: `cdc run` publishes actions to a topic, `cdc sink` workers write them to Elasticsearch.

messages.py is the message format (pure); client.py is the only module that sees confluent_kafka.
"""
