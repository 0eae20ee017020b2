-- What release N-1 already reads and writes is changed in place: every
-- statement here breaks N-1 if the code is rolled back.
SET lock_timeout = '2s';
ALTER TABLE orders DROP COLUMN IF EXISTS note;
ALTER TABLE orders RENAME COLUMN total TO total_cents;
ALTER TABLE orders ALTER COLUMN email SET NOT NULL;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS region text NOT NULL;
ALTER TABLE orders ALTER COLUMN code TYPE varchar(8);
ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;
