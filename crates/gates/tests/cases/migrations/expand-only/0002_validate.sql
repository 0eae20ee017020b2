SET lock_timeout = '2s';
ALTER TABLE orders VALIDATE CONSTRAINT email_present;
UPDATE orders SET region = 'eu' WHERE region IS NULL AND id < 10000;
