-- Run once by the mysql:8.4 image on first start (/docker-entrypoint-initdb.d),
-- as root, on a fresh data directory. Creates the cdc user and the demo `shop`
-- schema (the tables of demo/schema.sql).

-- Start the binary log afresh, so that everything below is in binlog.000001 and
-- deploy/docker/cdc.yml can start there (start.position: binlog.000001:4): the
-- demo rows then stream into Elasticsearch on cdc's first start. The server
-- opens binlog.000002 when it restarts after initialisation.
RESET BINARY LOGS AND GTIDS;

-- The password must match CDC_MYSQL_PASSWORD in docker-compose.yml (default `cdc`);
-- change both together.
-- caching_sha2_password, MySQL 8's and 9's default: cdc installs PyMySQL[rsa], whose
-- `cryptography` lets PyMySQL log in with it over a plain connection too (RSA key
-- exchange). Not mysql_native_password: MySQL 9 no longer has it, and the stack is
-- tested with a local MySQL 9.7 image (docker-compose.podman.yml).
CREATE USER 'cdc'@'%' IDENTIFIED WITH caching_sha2_password BY 'cdc';
-- REPLICATION SLAVE: read the binlog; REPLICATION CLIENT: SHOW BINARY LOGS and the
-- current position; SELECT: table definitions for the rules; RELOAD: FLUSH (snapshot tools).
GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, RELOAD ON *.* TO 'cdc'@'%';

CREATE DATABASE IF NOT EXISTS shop CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_ai_ci;
USE shop;

CREATE TABLE products (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  sku VARCHAR(32) NOT NULL UNIQUE,
  name VARCHAR(200) NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  tags SET('new','sale','eco') NOT NULL DEFAULT '',
  attributes JSON NULL,
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB;

CREATE TABLE orders (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer VARCHAR(100) NOT NULL,
  status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;

CREATE TABLE order_lines (
  order_id BIGINT UNSIGNED NOT NULL,
  line SMALLINT NOT NULL,
  product_id INT UNSIGNED NOT NULL,
  qty INT NOT NULL,
  PRIMARY KEY (order_id, line)
) ENGINE=InnoDB;

INSERT INTO products (sku, name, price, tags, attributes) VALUES
  ('TEA-01', 'Green tea', 4.50, 'eco', '{"origin": "Japan", "grams": 100}'),
  ('TEA-02', 'Black tea', 3.90, '', '{"origin": "India", "grams": 250}'),
  ('MUG-01', 'Stoneware mug', 12.00, 'new,sale', NULL),
  ('POT-01', 'Tea pot', 29.95, 'new', '{"litres": 1.2}');
INSERT INTO orders (customer, status) VALUES ('ada', 'paid'), ('grace', 'new');
INSERT INTO order_lines VALUES (1, 1, 1, 2), (1, 2, 3, 1), (2, 1, 4, 1);
