SET SESSION lock_wait_timeout = 2;
ALTER TABLE orders ADD COLUMN region VARCHAR(20) NULL COMMENT 'NULL until backfilled';
CREATE TABLE IF NOT EXISTS refunds (id BIGINT AUTO_INCREMENT PRIMARY KEY, refund_amount DECIMAL(12, 2) NOT NULL);
CREATE INDEX orders_region ON orders (region);
DELETE FROM sessions WHERE expires_at < '2020-01-01';
