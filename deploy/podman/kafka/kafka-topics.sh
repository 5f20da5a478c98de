#!/bin/sh
# The distribution's bin/kafka-topics.sh, without its kafka-run-class.sh.
exec "$JAVA_HOME/bin/java" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    -Dkafka.tools.quiet=true -cp '/opt/kafka/libs/*' org.apache.kafka.tools.TopicCommand "$@"
