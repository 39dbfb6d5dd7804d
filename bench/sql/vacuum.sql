VACUUM ANALYZE pgoutbox_message;
