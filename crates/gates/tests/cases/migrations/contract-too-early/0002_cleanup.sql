SET lock_timeout = '2s';
UPDATE orders SET status = 'archived';
TRUNCATE order_events;
DROP TABLE IF EXISTS legacy_carts;
