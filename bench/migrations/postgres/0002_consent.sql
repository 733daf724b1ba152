-- migrate:up
CREATE TABLE consent (user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE, purpose text NOT NULL, granted boolean NOT NULL, PRIMARY KEY (user_id, purpose));
-- migrate:down
DROP TABLE consent;
