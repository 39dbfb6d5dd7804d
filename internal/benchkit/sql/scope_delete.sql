-- outboxctl bench runs in scopes of its own and removes their rows when it
-- is done, so that a benchmark leaves nothing behind in an operator's table.
DELETE FROM pgoutbox_message WHERE scope = @scope::text;
