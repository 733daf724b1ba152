-- migrate:up
CREATE INDEX playlists_user ON playlists (user_id);
ALTER TABLE users ADD COLUMN country text;
CREATE INDEX users_country ON users (country);
-- migrate:down
DROP INDEX users_country;
ALTER TABLE users DROP COLUMN country;
DROP INDEX playlists_user;
