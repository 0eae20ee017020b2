-- The expand step of the same change: N-1 keeps working, N can use the
-- new column, and the contract step comes in a later release.
SET lock_timeout = '2s';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS region text;
COMMENT ON COLUMN orders.region IS 'NULL until the backfill of the next release';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS total_cents bigint NOT NULL DEFAULT 0;
ALTER TABLE orders ALTER COLUMN note DROP NOT NULL;
ALTER TABLE orders DROP CONSTRAINT IF EXISTS email_present;
ALTER TABLE orders ADD CONSTRAINT email_present CHECK (email IS NOT NULL) NOT VALID;
