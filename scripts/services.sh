#!/usr/bin/env bash
# Starts the services dbfleet needs on loopback: Redis, PostgreSQL, a MongoDB-compatible server
# (mongo-java-server by default, FerretDB 1.x on SQLite with DBFLEET_MONGO_SERVER=ferretdb) and an
# S3-compatible server (s3rver). Idempotent: when everything already
# answers it only prints the environment, in well under five seconds.
#
#   scripts/services.sh up        install what is missing, start what is down, print the environment
#   scripts/services.sh env       print the environment (export lines) without starting anything
#   scripts/services.sh status    say which service answers
#   scripts/services.sh down      stop everything this script started
#   scripts/services.sh restart postgres|redis|mongo|s3
#
# With a Docker engine answering (and DBFLEET_USE_DOCKER=1) it uses docker-compose.yml instead.
# State lives in $DBFLEET_STATE_DIR (default /var/tmp/dbfleet, which the postgres user can reach when
# we run as root): data folders, logs, the FerretDB build.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${DBFLEET_STATE_DIR:-/var/tmp/dbfleet}
REDIS_PORT=${DBFLEET_REDIS_PORT:-6379}
PG_PORT=${DBFLEET_PG_PORT:-5432}
MONGO_PORT=${DBFLEET_MONGO_PORT:-27017}
S3_PORT=${DBFLEET_S3_PORT:-9000}
FERRETDB_VERSION=v1.24.2
# FerretDB 1.24 rewrites a document with a scan of the whole collection (SQLite backend) and never
# finishes bulk updates, so million-document backfills cannot run on it; mongo-java-server can.
MONGO_SERVER=${DBFLEET_MONGO_SERVER:-mongo-java-server}
MJS_HEAP=${DBFLEET_MONGO_HEAP:-6g}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
PGDATA="$STATE/pg"
mkdir -p "$STATE/log" "$STATE/bin" "$STATE/run"

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$2" && return 0
    sleep 0.1
  done
  log "$1 did not open port $2 within $3 s; its log: $STATE/log/$1.log"
  tail -n 20 "$STATE/log/$1.log" >&2 || true
  return 1
}

print_env() {
  cat <<EOF
export DBFLEET_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export DBFLEET_CONTROL_DATABASE_URL=postgres://dbfleet:dbfleet@127.0.0.1:$PG_PORT/dbfleet
export DBFLEET_TENANT_POSTGRES_URL=postgres://dbfleet:dbfleet@127.0.0.1:$PG_PORT/dbfleet
export DBFLEET_TENANT_MONGO_URL=mongodb://127.0.0.1:$MONGO_PORT/
export DBFLEET_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export DBFLEET_S3_BUCKET=dbfleet
export AWS_ACCESS_KEY_ID=S3RVER
export AWS_SECRET_ACCESS_KEY=S3RVER
export AWS_REGION=us-east-1
EOF
}

apt_install() { # installs the Debian packages named, once
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  if [ ! -f "$STATE/run/apt-updated" ]; then apt-get update -qq && touch "$STATE/run/apt-updated"; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$STATE/log/apt.log" 2>&1
}

# ---------------------------------------------------------------------------------------- Redis
redis_up() {
  if port_open "$REDIS_PORT"; then
    # Whoever started it (a distribution's service, say), the fleet needs it durable and never
    # evicting keys; both can be switched on in a running instance.
    redis-cli -p "$REDIS_PORT" config set maxmemory-policy noeviction >/dev/null 2>&1 || true
    redis-cli -p "$REDIS_PORT" config set appendonly yes >/dev/null 2>&1 || true
    return 0
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  # Debian's package starts its own instance on 6379 through systemd where systemd runs; we do not
  # rely on it. Ours is durable: Redis holds the queues, MongoDB load checkpoints and undrained audit
  # events, so every write is appended to a file, fsynced each second (a stopped or restarted Redis
  # loses nothing; a crashed machine, up to about a second of writes).
  mkdir -p "$STATE/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly yes --appendfsync everysec \
    --maxmemory-policy noeviction --daemonize yes --pidfile "$STATE/run/redis.pid" \
    --logfile "$STATE/log/redis.log" --dir "$STATE/redis"
  wait_port redis "$REDIS_PORT" 10
}
redis_down() { # waits for Redis to finish writing and exit, so that a restart finds its data
  local pid
  if [ -f "$STATE/run/redis.pid" ] && pid=$(cat "$STATE/run/redis.pid") && kill "$pid" 2>/dev/null; then
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  elif port_open "$REDIS_PORT"; then
    # One we did not start (a distribution's service): SHUTDOWN persists what it holds first.
    redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
    while port_open "$REDIS_PORT"; do sleep 0.05; done
  fi
}

# ----------------------------------------------------------------------------------- PostgreSQL
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_up() {
  port_open "$PG_PORT" && return 0
  [ -n "$PG_BIN" ] || { apt_install postgresql; PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); }
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    log "creating a PostgreSQL cluster in $PGDATA"
    mkdir -p "$PGDATA"
    if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$PGDATA"; fi
    as_postgres "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$STATE/log/initdb.log"
    # Development settings: durability traded for speed, since this cluster holds only test data.
    cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$STATE/run'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
shared_buffers = 512MB
max_wal_size = 4GB
EOF
  fi
  if [ "$(id -u)" = 0 ]; then
    touch "$STATE/log/postgres.log"
    chown postgres:postgres "$STATE/run" "$STATE/log/postgres.log"
  fi
  as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$STATE/log/postgres.log" -w -t 30 start >/dev/null
  as_postgres psql -h "$STATE/run" -p "$PG_PORT" -U postgres -qtA -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
SELECT 'CREATE ROLE dbfleet LOGIN PASSWORD ''dbfleet'' CREATEDB'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dbfleet') \gexec
SELECT 'CREATE DATABASE dbfleet OWNER dbfleet'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'dbfleet') \gexec
-- The benchmarks start each timed side right after a checkpoint (bench/run-all.ts).
SELECT 'GRANT pg_checkpoint TO dbfleet'
 WHERE NOT pg_has_role('dbfleet', 'pg_checkpoint', 'MEMBER') \gexec
SQL
}
pg_down() { [ -f "$PGDATA/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || true; }

# ------------------------------------------------------------------------------------- FerretDB
ferretdb_build() {
  local bin="$STATE/bin/ferretdb-$FERRETDB_VERSION"
  [ -x "$bin" ] && { echo "$bin"; return 0; }
  command -v go >/dev/null || { log "go is needed to build FerretDB"; return 1; }
  log "building FerretDB $FERRETDB_VERSION from the Go module proxy (once; cached in $STATE/bin)"
  # `go install pkg@version` asks the proxy for the module's version list to check deprecation, which
  # the proxy here refuses; a throwaway module pinning the exact version avoids that request.
  local dir="$STATE/ferretdb-build"
  mkdir -p "$dir"
  printf 'module dbfleet.local/ferretdb-build\n\ngo 1.22\n\nrequire github.com/FerretDB/FerretDB %s\n' \
    "$FERRETDB_VERSION" >"$dir/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/FerretDB/FerretDB/cmd/ferretdb"\n' >"$dir/tools.go"
  # The module zip lacks the build/version/version.txt that FerretDB's release build generates and
  # embeds (it panics at start without it), so we build from a copy of the module with that file.
  (cd "$dir" && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" >src.json &&
    rm -rf src && cp -r "$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' src.json)" src && chmod -R u+w src &&
    echo "$FERRETDB_VERSION" >src/build/version/version.txt &&
    echo 'replace github.com/FerretDB/FerretDB => ./src' >>go.mod &&
    GOFLAGS=-mod=mod go mod tidy &&
    CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" github.com/FerretDB/FerretDB/cmd/ferretdb
  ) >"$STATE/log/ferretdb-build.log" 2>&1 || { tail -n 20 "$STATE/log/ferretdb-build.log" >&2; return 1; }
  mv "$bin.tmp" "$bin"
  echo "$bin"
}

mongo_java_server_build() { # fetches the jars from Maven Central and compiles the launcher, once
  local dir="$STATE/mongo-java-server" src="$ROOT/scripts/mongo-java-server"
  if [ ! -f "$dir/out/Main.class" ] || [ "$src/Main.java" -nt "$dir/out/Main.class" ]; then
    command -v mvn >/dev/null || apt_install maven
    log "fetching mongo-java-server from Maven Central (once; cached in $dir)"
    mkdir -p "$dir/out"
    (mvn -q -f "$src/pom.xml" dependency:copy-dependencies -DoutputDirectory="$dir/lib" &&
      javac -cp "$dir/lib/*" -d "$dir/out" "$src/Main.java") >"$STATE/log/mongo-build.log" 2>&1 ||
      { tail -n 20 "$STATE/log/mongo-build.log" >&2; return 1; }
  fi
  echo "$dir"
}

mongo_up() {
  port_open "$MONGO_PORT" && return 0
  if [ "$MONGO_SERVER" = ferretdb ]; then
    local bin
    bin=$(ferretdb_build)
    mkdir -p "$STATE/ferretdb-data" "$STATE/ferretdb-state"
    nohup "$bin" --listen-addr="127.0.0.1:$MONGO_PORT" --handler=sqlite \
      --sqlite-url="file:$STATE/ferretdb-data/" --state-dir="$STATE/ferretdb-state" \
      --telemetry=disable --log-level=warn --debug-addr=- >"$STATE/log/mongo.log" 2>&1 &
  else
    local dir
    dir=$(mongo_java_server_build)
    # In memory: data lives as long as the process (a restart starts empty).
    nohup java "-Xmx$MJS_HEAP" -XX:+UseParallelGC -cp "$dir/lib/*:$dir/out" Main 127.0.0.1 "$MONGO_PORT" \
      >"$STATE/log/mongo.log" 2>&1 &
  fi
  echo $! >"$STATE/run/mongo.pid"
  wait_port mongo "$MONGO_PORT" 60
}
mongo_down() { [ -f "$STATE/run/mongo.pid" ] && kill "$(cat "$STATE/run/mongo.pid")" 2>/dev/null || true; }

# ----------------------------------------------------------------------------------------- S3
s3_up() {
  port_open "$S3_PORT" && return 0
  local node="$ROOT/node_modules/.bin/node" s3rver="$ROOT/node_modules/s3rver/bin/s3rver.js"
  [ -f "$s3rver" ] || (cd "$ROOT" && npm ci --no-audit --no-fund >"$STATE/log/npm.log" 2>&1)
  mkdir -p "$STATE/s3"
  nohup "$node" "$s3rver" --directory "$STATE/s3" --address 127.0.0.1 --port "$S3_PORT" \
    --configure-bucket dbfleet --silent >"$STATE/log/s3.log" 2>&1 &
  echo $! >"$STATE/run/s3.pid"
  wait_port s3 "$S3_PORT" 20
}
s3_down() { [ -f "$STATE/run/s3.pid" ] && kill "$(cat "$STATE/run/s3.pid")" 2>/dev/null || true; }

docker_wanted() { [ "${DBFLEET_USE_DOCKER:-0}" = 1 ] && docker info >/dev/null 2>&1; }

status() {
  local name port
  for pair in redis:$REDIS_PORT postgres:$PG_PORT mongo:$MONGO_PORT s3:$S3_PORT; do
    name=${pair%%:*} port=${pair##*:}
    if port_open "$port"; then echo "$name up (127.0.0.1:$port)"; else echo "$name down"; fi
  done
}

case "${1:-up}" in
  up)
    if docker_wanted; then
      docker compose -f "$ROOT/docker-compose.yml" up -d --wait redis postgres mongo minio >&2
    else
      redis_up
      pg_up
      mongo_up
      s3_up
    fi
    print_env
    ;;
  env) print_env ;;
  status) status ;;
  down) s3_down; mongo_down; redis_down; pg_down ;;
  restart)
    case "${2:-}" in
      postgres) pg_down; pg_up ;;
      redis) redis_down; sleep 0.2; redis_up ;;
      mongo) mongo_down; sleep 0.2; mongo_up ;;
      s3) s3_down; sleep 0.2; s3_up ;;
      *) echo "usage: $0 restart postgres|redis|mongo|s3" >&2; exit 2 ;;
    esac
    ;;
  *) echo "usage: $0 up|env|status|down|restart <service>" >&2; exit 2 ;;
esac
