-- migrate:up
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, display_name text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE playlists (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE, name text NOT NULL, created_at timestamptz NOT NULL);
-- migrate:down
DROP TABLE playlists;
DROP TABLE users;
