-- name: OrderCreate :one
INSERT INTO orders (customer, total_cents)
VALUES (@customer::text, @total_cents::bigint)
RETURNING *;

-- name: OrderCount :one
SELECT count(*) FROM orders;

-- name: OrderCountByIDs :one
SELECT count(*) FROM orders WHERE id = ANY(@ids::bigint[]);
