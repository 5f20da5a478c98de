"""The schema zoo (issue 28): the tables a new user brings, for `cdc check`, the differential test and bench/zoo.py.

* Sakila, MySQL's own sample database (https://dev.mysql.com/doc/sakila/en/, New BSD
  license): its 16 tables as its `sakila-schema.sql` defines them, with their types
  (SMALLINT/TINYINT/MEDIUMINT UNSIGNED keys, YEAR, ENUM, SET, DECIMAL(4,2), BLOB,
  GEOMETRY, TEXT, BOOLEAN, `VARCHAR BINARY`, TIMESTAMP ... ON UPDATE), without its
  foreign keys, views, triggers and routines (cdc reads rows, and a random load should
  not have to follow the keys) and without `address.location`'s SRID and SPATIAL index
  (MariaDB spells SRIDs differently; the binlog value is the same).
* Tables of the kinds that fell to the Python path before issue 28: a latin1 table (MariaDB's
  upstream default charset), a gbk table, a JSON table (MySQL's binary JSON; MariaDB's JSON
  is LONGTEXT), a GEOMETRY/POINT table, and a table whose rule uses every `convert:`.

The rows come from a seeded generator, so a failure is reproducible.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

_TS = "last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"

SAKILA = {
    "actor": f"""actor_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT, first_name VARCHAR(45) NOT NULL,
        last_name VARCHAR(45) NOT NULL, {_TS}, PRIMARY KEY (actor_id), KEY idx_actor_last_name (last_name)""",
    "address": f"""address_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT, address VARCHAR(50) NOT NULL,
        address2 VARCHAR(50) DEFAULT NULL, district VARCHAR(20) NOT NULL, city_id SMALLINT UNSIGNED NOT NULL,
        postal_code VARCHAR(10) DEFAULT NULL, phone VARCHAR(20) NOT NULL, location GEOMETRY NOT NULL, {_TS},
        PRIMARY KEY (address_id), KEY idx_fk_city_id (city_id)""",
    "category": f"""category_id TINYINT UNSIGNED NOT NULL AUTO_INCREMENT, name VARCHAR(25) NOT NULL, {_TS},
        PRIMARY KEY (category_id)""",
    "city": f"""city_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT, city VARCHAR(50) NOT NULL,
        country_id SMALLINT UNSIGNED NOT NULL, {_TS}, PRIMARY KEY (city_id), KEY idx_fk_country_id (country_id)""",
    "country": f"""country_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT, country VARCHAR(50) NOT NULL, {_TS},
        PRIMARY KEY (country_id)""",
    "customer": """customer_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT, store_id TINYINT UNSIGNED NOT NULL,
        first_name VARCHAR(45) NOT NULL, last_name VARCHAR(45) NOT NULL, email VARCHAR(50) DEFAULT NULL,
        address_id SMALLINT UNSIGNED NOT NULL, active BOOLEAN NOT NULL DEFAULT TRUE, create_date DATETIME NOT NULL,
        last_update TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
        PRIMARY KEY (customer_id), KEY idx_fk_store_id (store_id), KEY idx_last_name (last_name)""",
    "film": f"""film_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT, title VARCHAR(128) NOT NULL,
        description TEXT DEFAULT NULL, release_year YEAR DEFAULT NULL, language_id TINYINT UNSIGNED NOT NULL,
        original_language_id TINYINT UNSIGNED DEFAULT NULL, rental_duration TINYINT UNSIGNED NOT NULL DEFAULT 3,
        rental_rate DECIMAL(4,2) NOT NULL DEFAULT 4.99, length SMALLINT UNSIGNED DEFAULT NULL,
        replacement_cost DECIMAL(5,2) NOT NULL DEFAULT 19.99,
        rating ENUM('G','PG','PG-13','R','NC-17') DEFAULT 'G',
        special_features SET('Trailers','Commentaries','Deleted Scenes','Behind the Scenes') DEFAULT NULL, {_TS},
        PRIMARY KEY (film_id), KEY idx_title (title)""",
    "film_actor": f"""actor_id SMALLINT UNSIGNED NOT NULL, film_id SMALLINT UNSIGNED NOT NULL, {_TS},
        PRIMARY KEY (actor_id, film_id), KEY idx_fk_film_id (film_id)""",
    "film_category": f"""film_id SMALLINT UNSIGNED NOT NULL, category_id TINYINT UNSIGNED NOT NULL, {_TS},
        PRIMARY KEY (film_id, category_id)""",
    "film_text": """film_id SMALLINT NOT NULL, title VARCHAR(255) NOT NULL, description TEXT,
        PRIMARY KEY (film_id), FULLTEXT KEY idx_title_description (title, description)""",
    "inventory": f"""inventory_id MEDIUMINT UNSIGNED NOT NULL AUTO_INCREMENT, film_id SMALLINT UNSIGNED NOT NULL,
        store_id TINYINT UNSIGNED NOT NULL, {_TS}, PRIMARY KEY (inventory_id),
        KEY idx_store_id_film_id (store_id, film_id)""",
    "language": f"""language_id TINYINT UNSIGNED NOT NULL AUTO_INCREMENT, name CHAR(20) NOT NULL, {_TS},
        PRIMARY KEY (language_id)""",
    "payment": """payment_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT, customer_id SMALLINT UNSIGNED NOT NULL,
        staff_id TINYINT UNSIGNED NOT NULL, rental_id INT DEFAULT NULL, amount DECIMAL(5,2) NOT NULL,
        payment_date DATETIME NOT NULL,
        last_update TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, PRIMARY KEY (payment_id)""",
    "rental": f"""rental_id INT NOT NULL AUTO_INCREMENT, rental_date DATETIME NOT NULL,
        inventory_id MEDIUMINT UNSIGNED NOT NULL, customer_id SMALLINT UNSIGNED NOT NULL,
        return_date DATETIME DEFAULT NULL, staff_id TINYINT UNSIGNED NOT NULL, {_TS}, PRIMARY KEY (rental_id),
        UNIQUE KEY (rental_date, inventory_id, customer_id)""",
    "staff": f"""staff_id TINYINT UNSIGNED NOT NULL AUTO_INCREMENT, first_name VARCHAR(45) NOT NULL,
        last_name VARCHAR(45) NOT NULL, address_id SMALLINT UNSIGNED NOT NULL, picture BLOB DEFAULT NULL,
        email VARCHAR(50) DEFAULT NULL, store_id TINYINT UNSIGNED NOT NULL, active BOOLEAN NOT NULL DEFAULT TRUE,
        username VARCHAR(16) NOT NULL, password VARCHAR(40) BINARY DEFAULT NULL, {_TS}, PRIMARY KEY (staff_id)""",
    "store": f"""store_id TINYINT UNSIGNED NOT NULL AUTO_INCREMENT, manager_staff_id TINYINT UNSIGNED NOT NULL,
        address_id SMALLINT UNSIGNED NOT NULL, {_TS}, PRIMARY KEY (store_id),
        UNIQUE KEY idx_unique_manager (manager_staff_id)""",
}

LEGACY = {
    # MariaDB's upstream default charset: VARCHAR and TEXT in latin1 (MySQL's cp1252).
    "legacy_latin1": ("id INT NOT NULL PRIMARY KEY, sku VARCHAR(32) NOT NULL, note TEXT, qty INT, "
                      "price DECIMAL(10,2), updated DATETIME(3)", "latin1"),
    "legacy_gbk": ("id INT NOT NULL PRIMARY KEY, name VARCHAR(50), note TEXT, updated DATETIME", "gbk"),
    "doc_json": ("id BIGINT NOT NULL PRIMARY KEY, attrs JSON, status VARCHAR(10)", None),
    "places": ("id INT NOT NULL PRIMARY KEY, name VARCHAR(40), shape GEOMETRY, pt POINT", None),
    "tagged": ("id INT NOT NULL PRIMARY KEY, tags VARCHAR(200), title VARCHAR(100), flag TINYINT, "
               "created DATETIME, payload TEXT", None),
}

# `convert:` of the tagged table's rule: every conversion, one chained.
CONVERT = {"tags": [{"split": ","}, "lower"], "title": "upper", "flag": "bool",
           "created": {"datetime": "%Y/%m/%d"}, "payload": "json"}

TABLES = (*SAKILA, *LEGACY)


def ddl() -> list[str]:
    statements = [f"CREATE TABLE `{name}` ({body}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                  for name, body in SAKILA.items()]
    statements += [f"CREATE TABLE `{name}` ({body}) ENGINE=InnoDB DEFAULT CHARSET={charset or 'utf8mb4'}"
                   for name, (body, charset) in LEGACY.items()]
    return statements


def rules(schema: str, index_prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for table in TABLES:
        rule: dict[str, Any] = {"schema": schema, "table": table, "index": f"{index_prefix}-{table}"}
        if table == "tagged":
            rule["convert"] = CONVERT
        out.append(rule)
    return out


# --------------------------------------------------------------------------- the random load
_WORDS = ["ACADEMY", "DINOSAUR", "épée", "Crème brûlée", "naïve", "€5", "ÆON", "déjà vu", "PENELOPE", "GUINESS",
          "o'brien", 'say "hi"', "back\\slash", "tab\tbed", ""]
_GBK_WORDS = ["中文", "汉字", "北京", "测试", "gbk", "数据库", "检索"]


def _word(rng: random.Random) -> str:
    return rng.choice(_WORDS)


def _text(rng: random.Random, n: int = 4) -> str:
    return " ".join(_word(rng) for _ in range(rng.randint(0, n)))


def _ts(rng: random.Random) -> str:
    return (f"20{rng.randint(0, 37):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}")


def _geometry(rng: random.Random) -> str:
    digits = rng.randint(0, 9)
    x, y = rng.uniform(-180, 180), rng.uniform(-90, 90)

    def p(a: float, b: float) -> str:  # WKT wants plain decimals, not 1e-05
        return f"{a:.{digits}f} {b:.{digits}f}"

    kind = rng.randrange(5)
    if kind == 0:
        wkt = f"POINT({p(x, y)})"
    elif kind == 1:
        wkt = f"LINESTRING({p(x, y)}, {p(x + 1.5, y - 0.25)}, {p(x / 3, y / 7)})"
    elif kind == 2:
        wkt = f"POLYGON(({p(x, y)}, {p(x + 1, y)}, {p(x + 1, y + 1)}, {p(x, y)}))"
    elif kind == 3:
        wkt = f"MULTIPOINT({p(x, y)}, {p(y, x)})"  # MariaDB reads only the form without inner parentheses
    else:
        wkt = f"GEOMETRYCOLLECTION(POINT({p(x, y)}), LINESTRING(0 0, {p(x, y)}))"
    return f"ST_GeomFromText('{wkt}')"


def _quote(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str) and value.startswith(("ST_GeomFromText(", "UNHEX(")):  # an SQL expression
        return value
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _row(table: str, key: int, rng: random.Random) -> dict[str, Any]:
    """Values for every column but the key (and last_update), valid for the column."""
    small = rng.randint(1, 200)
    rows: dict[str, dict[str, Any]] = {
        "actor": {"first_name": _word(rng)[:45] or "X", "last_name": _text(rng)[:45]},
        "address": {"address": _text(rng)[:50], "address2": rng.choice([None, _word(rng)]),
                    "district": _word(rng)[:20], "city_id": small, "postal_code": rng.choice([None, "35200"]),
                    "phone": str(rng.randint(10 ** 8, 10 ** 11)), "location": _geometry(rng)},
        "category": {"name": _word(rng)[:25]},
        "city": {"city": _text(rng)[:50], "country_id": small},
        "country": {"country": _text(rng)[:50]},
        "customer": {"store_id": rng.randint(1, 2), "first_name": _word(rng), "last_name": _word(rng),
                     "email": rng.choice([None, f"{key}@sakilacustomer.org"]), "address_id": small,
                     "active": rng.randint(0, 1), "create_date": _ts(rng)},
        "film": {"title": _text(rng)[:128], "description": rng.choice([None, _text(rng, 20)]),
                 "release_year": rng.choice([None, rng.randint(1901, 2155)]), "language_id": rng.randint(1, 6),
                 "original_language_id": rng.choice([None, 1]), "rental_duration": rng.randint(3, 7),
                 "rental_rate": rng.choice(["0.99", "2.99", "4.99", "99.99"]), "length": rng.randint(46, 185),
                 "replacement_cost": f"{rng.randint(9, 29)}.99",
                 "rating": rng.choice(["G", "PG", "PG-13", "R", "NC-17", None]),
                 "special_features": rng.choice([None, "", "Trailers", "Trailers,Deleted Scenes",
                                                 "Commentaries,Behind the Scenes"])},
        "film_actor": {},
        "film_category": {},
        "film_text": {"title": _text(rng)[:255], "description": _text(rng, 30)},
        "inventory": {"film_id": small, "store_id": rng.randint(1, 2)},
        "language": {"name": _word(rng)[:20]},
        "payment": {"customer_id": small, "staff_id": rng.randint(1, 2), "rental_id": rng.choice([None, small]),
                    "amount": f"{rng.randint(0, 999)}.{rng.randint(0, 99):02d}", "payment_date": _ts(rng)},
        "rental": {"rental_date": _ts(rng), "inventory_id": rng.randint(1, 4581), "customer_id": small,
                   "return_date": rng.choice([None, _ts(rng)]), "staff_id": rng.randint(1, 2)},
        "staff": {"first_name": _word(rng) or "Mike", "last_name": _word(rng), "address_id": small,
                  "picture": rng.choice([None, f"UNHEX('{bytes(rng.randrange(256) for _ in range(40)).hex()}')"]),
                  "email": None, "store_id": rng.randint(1, 2), "active": 1, "username": f"u{key}"[:16],
                  "password": rng.choice([None, "8cb2237d0679ca88db6464eac60da96345513964"])},
        "store": {"manager_staff_id": key % 250, "address_id": small},
        "legacy_latin1": {"sku": f"SKU-{key}", "note": _text(rng, 8), "qty": rng.randint(-5, 500),
                          "price": f"{rng.randint(0, 9999)}.{rng.randint(0, 99):02d}", "updated": _ts(rng) + ".125"},
        "legacy_gbk": {"name": rng.choice(_GBK_WORDS), "note": " ".join(rng.sample(_GBK_WORDS, 3)),
                       "updated": _ts(rng)},
        # Objects only: the default `json_mapping: object` field takes nothing else (a column holding
        # scalars wants `json_mapping: disabled`; the differential unit tests cover every JSON value).
        "doc_json": {"attrs": rng.choice([None, '{"color": "red", "size": [1.5, 2.5], "n": null}',
                                          f'{{"k": {key}, "tags": ["a", "é"], "deep": {{"x": {{"y": 1e-7}}}}}}',
                                          '{}', f'{{"t": true, "id": "{key}"}}']),
                     "status": rng.choice(["new", "paid", "shipped"])},
        "places": {"name": _word(rng), "shape": rng.choice([None, _geometry(rng)]),
                   "pt": rng.choice([None, f"ST_GeomFromText('POINT({rng.uniform(-180, 180)} "
                                           f"{rng.uniform(-90, 90)})')"])},
        "tagged": {"tags": rng.choice([None, "", "Red,GREEN,blue", "one", _text(rng).replace(" ", ",")]),
                   "title": _text(rng)[:100], "flag": rng.choice([1, 0, -1, 2, None]),
                   "created": rng.choice([None, _ts(rng)]),
                   "payload": rng.choice([None, '{"a": [1, 2]}', '{"b": "x", "c": null}', '{}'])},
    }
    return rows[table]


_COMPOSITE = {"film_actor": ("actor_id", "film_id"), "film_category": ("film_id", "category_id")}
_KEY = {"film_text": "film_id"}


def _keys(table: str) -> tuple[str, ...]:
    if table in _COMPOSITE:
        return _COMPOSITE[table]
    if table in SAKILA:
        return (_KEY.get(table, f"{table}_id"),)
    return ("id",)


def statements(seed: int, changes: int) -> Iterator[str]:
    """`changes` row changes over every zoo table: inserts (some multi-row), updates and deletes."""
    rng = random.Random(seed)
    alive: dict[str, list[int]] = {t: [] for t in TABLES}
    next_key = {t: 1 for t in TABLES}
    limits = {"category": 250, "language": 250, "staff": 250, "store": 250, "film_text": 32000}  # key types
    done = 0
    while done < changes:
        table = rng.choice(TABLES)
        keys = _keys(table)
        live = alive[table]
        roll = rng.random()
        if roll < 0.6 or len(live) < 3:
            n = rng.choice([1, 1, 1, 3])
            if next_key[table] + n > limits.get(table, 60000):
                continue
            rows = []
            for _ in range(n):
                key = next_key[table]
                next_key[table] += 1
                live.append(key)
                values = _row(table, key, rng)
                key_values = [key, key * 7 % 200 + 1] if len(keys) == 2 else [key]
                rows.append((key_values, values))
            columns = [*keys, *rows[0][1]]
            body = ", ".join("(" + ", ".join(_quote(v) for v in [*k, *v.values()]) + ")" for k, v in rows)
            yield f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in columns)}) VALUES {body}"
            done += n
            continue
        key = rng.choice(live)
        where = " AND ".join(f"`{c}` = {v}" for c, v in zip(keys, [key, key * 7 % 200 + 1]))
        if roll < 0.9:
            values = _row(table, key, rng)
            if not values:  # a pure link table: only last_update changes
                yield f"UPDATE `{table}` SET last_update = '{_ts(rng)}' WHERE {where}"
            else:
                column = rng.choice(list(values))
                yield f"UPDATE `{table}` SET `{column}` = {_quote(values[column])} WHERE {where}"
        else:
            live.remove(key)
            yield f"DELETE FROM `{table}` WHERE {where}"
        done += 1
