-- The personal-data map finds a listener's playlists by user_id: without this index every erasure
-- scans the whole table (`dbfleet erase check-map` reports such locations).
-- migrate:up
CREATE INDEX playlists_user_id ON playlists (user_id);

-- migrate:down
DROP INDEX playlists_user_id;
