-- Demo schema and data for `make demo`: a tiny shop.
CREATE DATABASE IF NOT EXISTS shop;
USE shop;
DROP TABLE IF EXISTS order_lines, orders, products;
CREATE TABLE products (
  id INT UNSIGNED PRIMARY KEY AUTO_INCREMENT,
  sku VARCHAR(32) NOT NULL UNIQUE,
  name VARCHAR(200) NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  tags SET('new','sale','eco') NOT NULL DEFAULT '',
  attributes JSON NULL,
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
);
CREATE TABLE orders (
  id BIGINT UNSIGNED PRIMARY KEY AUTO_INCREMENT,
  customer VARCHAR(100) NOT NULL,
  status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
);
CREATE TABLE order_lines (
  order_id BIGINT UNSIGNED NOT NULL,
  line SMALLINT NOT NULL,
  product_id INT UNSIGNED NOT NULL,
  qty INT NOT NULL,
  PRIMARY KEY (order_id, line)
);
INSERT INTO products (sku, name, price, tags, attributes) VALUES
  ('TEA-01', 'Green tea', 4.50, 'eco', '{"origin": "Japan", "grams": 100}'),
  ('TEA-02', 'Black tea', 3.90, '', '{"origin": "India", "grams": 250}'),
  ('MUG-01', 'Stoneware mug', 12.00, 'new,sale', NULL),
  ('POT-01', 'Tea pot', 29.95, 'new', '{"litres": 1.2}');
INSERT INTO orders (customer, status) VALUES ('ada', 'paid'), ('grace', 'new');
INSERT INTO order_lines VALUES (1, 1, 1, 2), (1, 2, 3, 1), (2, 1, 4, 1);
