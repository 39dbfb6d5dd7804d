-- The demo service's own table. In a real service this lives in the
-- service's migrations; pgoutbox only adds pgoutbox_message beside it.
CREATE TABLE IF NOT EXISTS orders (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer    text        NOT NULL,
    total_cents bigint      NOT NULL CHECK (total_cents >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
