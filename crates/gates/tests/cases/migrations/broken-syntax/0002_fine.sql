SET lock_timeout = '2s';
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_region ON orders (region);
