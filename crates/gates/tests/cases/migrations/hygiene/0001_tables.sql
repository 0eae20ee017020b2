SET lock_timeout = '2s';
CREATE TABLE IF NOT EXISTS invoices (
    number text NOT NULL,
    amount double precision NOT NULL,
    shipping_fee real NOT NULL,
    tax_rate real NOT NULL,
    paid_at timestamptz
);
CREATE TABLE IF NOT EXISTS line_items (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_price numeric(12, 2) NOT NULL,
    weight_kg double precision NOT NULL
);
