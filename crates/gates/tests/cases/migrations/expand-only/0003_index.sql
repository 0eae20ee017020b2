-- CONCURRENTLY cannot run in a transaction: its own file, its own session.
SET lock_timeout = '2s';
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_region ON orders (region);
