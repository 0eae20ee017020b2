-- Saved as Latin-1 by an old editor: café orders.
SET lock_timeout = '2s';
ALTER TABLE orders DROP COLUMN IF EXISTS note;
