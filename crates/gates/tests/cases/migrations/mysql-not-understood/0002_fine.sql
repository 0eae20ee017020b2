SET SESSION lock_wait_timeout = 2;
ALTER TABLE orders ADD COLUMN channel VARCHAR(20) NOT NULL DEFAULT 'web' COMMENT 'web, app or kiosk';
