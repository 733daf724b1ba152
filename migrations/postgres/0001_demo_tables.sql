-- The demo music-streaming app's tables.
-- migrate:up
CREATE TABLE users (
  id            bigint PRIMARY KEY,
  email         text NOT NULL UNIQUE,
  display_name  text NOT NULL,
  country       text,
  birth_year    integer,
  created_at    timestamptz NOT NULL
);
CREATE TABLE playlists (
  id          bigint PRIMARY KEY,
  user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name        text NOT NULL,
  is_public   boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL
);
CREATE TABLE playlist_tracks (
  playlist_id  bigint NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
  position     integer NOT NULL,
  track_id     text NOT NULL,
  added_at     timestamptz NOT NULL,
  PRIMARY KEY (playlist_id, position)
);
CREATE TABLE consent (
  user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose     text NOT NULL,
  granted     boolean NOT NULL,
  updated_at  timestamptz NOT NULL,
  PRIMARY KEY (user_id, purpose)
);

-- migrate:down
DROP TABLE consent;
DROP TABLE playlist_tracks;
DROP TABLE playlists;
DROP TABLE users;
