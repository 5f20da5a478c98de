#!/usr/local/python/bin/python3
"""Start Elasticsearch the way the official image's entrypoint does for docker-compose.yml.

Every environment variable whose name is a setting (lower case with a dot, such as
discovery.type or xpack.security.enabled) becomes an -E option; ES_JAVA_OPTS is read by
bin/elasticsearch itself. Arguments given to the container are passed on.
"""
import os
import re
import sys

SETTING = re.compile(r"^[a-z0-9_]+\.[a-z0-9_.]+$")
settings = [f"-E{name}={value}" for name, value in sorted(os.environ.items()) if SETTING.match(name)]
os.execv("/usr/share/elasticsearch/bin/elasticsearch",
         ["elasticsearch", *settings, *sys.argv[1:]])
