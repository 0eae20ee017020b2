ALTER TABLE orders ADD COLUMN IF NOT EXISTS token uuid NOT NULL DEFAULT gen_random_uuid();
COMMENT ON COLUMN orders.token IS 'set for every row';
BEGIN;
ALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total >= 0);
UPDATE orders SET total = 0 WHERE total IS NULL;
COMMIT;
CREATE INDEX orders_token ON orders (token);
CREATE TABLE order_notes (id bigint PRIMARY KEY, body text NOT NULL);
