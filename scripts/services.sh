#!/usr/bin/env bash
# Starts the services dbfleet needs on loopback: Redis, PostgreSQL (tenant schemas and the control
# database), FerretDB 2 on a PostgreSQL cluster of its own with Microsoft's DocumentDB extension (the
# MongoDB-compatible server) and an S3-compatible server (s3rver). Idempotent: when everything already
# answers it only prints the environment, in well under five seconds.
#
#   scripts/services.sh up        install and build what is missing, start what is down, print the environment
#   scripts/services.sh build     install and build what is missing, start nothing (CI runs it first)
#   scripts/services.sh env       print the environment (export lines) without starting anything
#   scripts/services.sh status    say which service answers
#   scripts/services.sh down      stop everything this script started
#   scripts/services.sh restart|stop postgres|redis|mongo|mongo-postgres|s3
#                                 one service (mongo is FerretDB, mongo-postgres the PostgreSQL under
#                                 it); `up` starts a stopped one again
#
# With a Docker engine answering (and DBFLEET_USE_DOCKER=1) it uses docker-compose.yml instead.
# State lives in $DBFLEET_STATE_DIR (default /var/tmp/dbfleet, which the postgres user can reach when
# we run as root): data folders, logs, sockets. What is built once per machine (the PostgreSQL
# extensions, installed into the server's own folders; FerretDB; mongodump and mongorestore) is
# cached in $DBFLEET_BUILD_DIR (default /var/tmp/dbfleet-build), shared by every state dir.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${DBFLEET_STATE_DIR:-/var/tmp/dbfleet}
BUILD=${DBFLEET_BUILD_DIR:-/var/tmp/dbfleet-build}
# Source archives of what no package registry serves (see its README); upstream when absent.
VENDOR=${DBFLEET_VENDOR_DIR:-$ROOT/../shared/vendor}
REDIS_PORT=${DBFLEET_REDIS_PORT:-6379}
PG_PORT=${DBFLEET_PG_PORT:-5432}
MONGO_PORT=${DBFLEET_MONGO_PORT:-27017}
FERRET_PG_PORT=${DBFLEET_FERRET_PG_PORT:-5433}
S3_PORT=${DBFLEET_S3_PORT:-9000}
FERRETDB_VERSION=v2.5.0
DOCUMENTDB_TAG=v0.106-0 # its C code is FerretDB's fork tag v0.106.0-ferretdb-2.5.0, which v2.5.0 requires
PG_CRON_TAG=v1.6.3      # Debian 12's 1.4 refuses DocumentDB's "2 seconds" schedules
PGVECTOR_TAG=v0.8.0     # not packaged by Debian 12
MONGO_TOOLS_TAG=100.18.0
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
PGDATA="$STATE/pg"
FERRET_PGDATA="$STATE/ferret-pg"
MONGO_TOOLS="$BUILD/mongo-tools-$MONGO_TOOLS_TAG/bin"
mkdir -p "$STATE/log" "$STATE/run"

log() { printf '[services] %s\n' "$*" >&2; }

# Over the cluster's socket, as its superuser (trusted locally, as for psql).
ferret_pg_url() { echo "postgres://postgres@localhost:$FERRET_PG_PORT/postgres?host=$STATE/run"; }

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

# Beside the fleet's settings: where mongodump and mongorestore are (the reference for backup and
# restore figures), and FerretDB's PostgreSQL as its superuser, for benchmarks and inspection.
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
export DBFLEET_MONGO_TOOLS=$MONGO_TOOLS
export DBFLEET_FERRET_POSTGRES_URL=$(ferret_pg_url)
EOF
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_update_once() {
  if [ ! -f "$STATE/run/apt-updated" ]; then as_root apt-get update -qq && touch "$STATE/run/apt-updated"; fi
}

apt_get_install() { # package[=version]...
  local started=$SECONDS
  log "installing ${*} from Debian's packages"
  apt_update_once
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$STATE/log/apt.log" 2>&1 ||
    { tail -n 20 "$STATE/log/apt.log" >&2; return 1; }
  log "installed in $((SECONDS - started)) s"
}

apt_install() { # installs the Debian packages named that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] || apt_get_install "${missing[@]}"
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
# Two clusters from the same Debian server: one for tenant schemas and the control database, one
# under FerretDB. Each has its own data folder, port, log and pid, so restarting one never touches
# the other.
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_psql() { # port, then psql arguments: as the superuser, over the cluster's socket
  local port=$1
  shift
  as_postgres psql -h "$STATE/run" -p "$port" -U postgres -qtA -v ON_ERROR_STOP=1 "$@"
}

pg_cluster_init() { # data-dir port log-name, then extra postgresql.conf lines on stdin
  local data=$1 port=$2
  [ -f "$data/PG_VERSION" ] && { cat >/dev/null; return 0; }
  log "creating a PostgreSQL cluster in $data"
  mkdir -p "$data"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$data"; fi
  as_postgres "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$STATE/log/initdb-$3.log"
  # Development settings: durability against a crashed machine traded for speed, since these
  # clusters hold only test data (a restarted or killed server loses nothing committed).
  {
    cat <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$STATE/run'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
shared_buffers = 512MB
max_wal_size = 4GB
EOF
    cat
  } | as_postgres tee -a "$data/postgresql.conf" >/dev/null
}

pg_cluster_start() { # data-dir log-name
  if [ "$(id -u)" = 0 ]; then
    touch "$STATE/log/$2.log"
    chown postgres:postgres "$STATE/run" "$STATE/log/$2.log"
  fi
  as_postgres "$PG_BIN/pg_ctl" -D "$1" -l "$STATE/log/$2.log" -w -t 60 start >/dev/null
}

pg_cluster_stop() { # data-dir
  [ -f "$1/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null || true
}

pg_major() { local dir=${PG_BIN%/bin}; echo "${dir##*/}"; }

pg_server_install() {
  [ -n "$PG_BIN" ] && return 0
  # On a machine without PostgreSQL the extension build's packages come in the same step, before any
  # cluster starts (see documentdb_build_deps).
  apt_update_once
  local major
  major=$(apt-cache depends postgresql | sed -n 's/.*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1)
  apt_install postgresql "${DOCUMENTDB_DEB_DEPS[@]/\%/$major}"
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
}

pg_up() {
  port_open "$PG_PORT" && return 0
  pg_cluster_init "$PGDATA" "$PG_PORT" postgres </dev/null
  pg_cluster_start "$PGDATA" postgres
  pg_psql "$PG_PORT" <<'SQL' >/dev/null
SELECT 'CREATE ROLE dbfleet LOGIN PASSWORD ''dbfleet'' CREATEDB'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dbfleet') \gexec
SELECT 'CREATE DATABASE dbfleet OWNER dbfleet'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'dbfleet') \gexec
-- The benchmarks start each timed side right after a checkpoint (bench/run-all.ts).
SELECT 'GRANT pg_checkpoint TO dbfleet'
 WHERE NOT pg_has_role('dbfleet', 'pg_checkpoint', 'MEMBER') \gexec
SQL
}
pg_down() { pg_cluster_stop "$PGDATA"; }

# --------------------------------------------------------------- builds from the source archives
source_archive() { # vendored-file upstream-url: prints the archive's path (vendored, else downloaded once)
  local file=$1 url=$2 got
  if [ -f "$VENDOR/$file" ]; then echo "$VENDOR/$file"; return 0; fi
  got="$BUILD/downloads/${file%%.tar.*}${url#"${url%.tar.*}"}" # upstream names archives by tag alone
  if [ ! -f "$got" ]; then
    log "downloading $url (no $VENDOR/$file)"
    mkdir -p "$BUILD/downloads"
    curl -fsSL --retry 3 -o "$got.tmp" "$url" && mv "$got.tmp" "$got"
  fi
  echo "$got"
}

unpack() { # archive dir: the archive's top folder becomes dir (vendored and upstream tops differ)
  rm -rf "$2" && mkdir -p "$2" && tar xf "$1" -C "$2" --strip-components=1
}

with_build_lock() { # one build at a time per machine, whichever state dir asked
  mkdir -p "$BUILD"
  (
    flock 9
    "$@"
  ) 9>"$BUILD/.lock"
}

need_go() { command -v go >/dev/null || { log "Go (1.24 or later) is needed to build $1"; return 1; }; }

# The Debian packages DocumentDB's build needs (% stands for the PostgreSQL major version).
DOCUMENTDB_DEB_DEPS=(postgresql-server-dev-% postgresql-%-postgis-3 postgresql-%-rum libbson-dev libpcre2-dev
  libintelrdfpmath-dev libkrb5-dev pkg-config build-essential)

documentdb_build_deps() {
  local major server version pkgs=() p cand
  major=$(pg_major)
  server=postgresql-$major
  version=$(dpkg-query -W -f='${Version}' "$server")
  apt_update_once
  # A server upgraded under a running cluster fails every later connection that loads a library
  # (plpgsql.so: undefined symbol) until that cluster restarts, and other people's clusters may run
  # from this server. So the installed server stays as it is: its headers of the same version, and
  # of each extension package the newest version that accepts it.
  for p in "${DOCUMENTDB_DEB_DEPS[@]/\%/$major}"; do
    if dpkg -s "$p" >/dev/null 2>&1; then continue; fi
    case $p in
      postgresql-server-dev-*) pkgs+=("$p=$version") ;;
      postgresql-*)
        for cand in $(apt-cache madison "$p" | awk '{ print $3 }') ''; do
          [ -z "$cand" ] && { log "no version of $p accepts the installed $server $version"; return 1; }
          if apt-get install -s -qq "$p=$cand" "$server=$version" >/dev/null 2>&1; then
            pkgs+=("$p=$cand")
            break
          fi
        done
        ;;
      *) pkgs+=("$p") ;;
    esac
  done
  [ ${#pkgs[@]} -eq 0 ] || apt_get_install "$server=$version" "${pkgs[@]}"
}

pg_config_bin() { echo "$PG_BIN/pg_config"; }

ext_version() { # extension: its installed default version, if any
  sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$("$(pg_config_bin)" --sharedir)/extension/$1.control" 2>/dev/null || true
}

documentdb_installed() {
  [ "$(ext_version documentdb)" = "${DOCUMENTDB_TAG#v}" ] && [ "$(ext_version pg_cron)" = 1.6 ] &&
    [ "$(ext_version vector)" = "${PGVECTOR_TAG#v}" ]
}

make_install() { # dir, then make variables: builds with both cores, installs into the server's folders
  make -C "$1" -j "$(nproc)" PG_CONFIG="$(pg_config_bin)" with_llvm=no "${@:2}" &&
    as_root make -C "$1" PG_CONFIG="$(pg_config_bin)" with_llvm=no "${@:2}" install
}

documentdb_compile() {
  documentdb_installed && return 0
  local src="$BUILD/src" multiarch started=$SECONDS
  log "building pg_cron $PG_CRON_TAG, pgvector $PGVECTOR_TAG and DocumentDB $DOCUMENTDB_TAG (once per machine)"
  documentdb_build_deps
  # Debian ships the Intel decimal library without the pkg-config file DocumentDB's build asks for.
  multiarch=$(gcc -print-multiarch)
  mkdir -p "$BUILD/pkgconfig"
  printf 'Name: intelmathlib\nDescription: Intel decimal floating point (Debian libintelrdfpmath-dev)\nVersion: 2.0\nLibs: -L/usr/lib/%s -lbidgcc000\nCflags: -I/usr/include\n' \
    "$multiarch" >"$BUILD/pkgconfig/intelmathlib.pc"
  unpack "$(source_archive "pg_cron-$PG_CRON_TAG.tar.gz" "https://github.com/citusdata/pg_cron/archive/refs/tags/$PG_CRON_TAG.tar.gz")" "$src/pg_cron"
  unpack "$(source_archive "pgvector-$PGVECTOR_TAG.tar.gz" "https://github.com/pgvector/pgvector/archive/refs/tags/$PGVECTOR_TAG.tar.gz")" "$src/pgvector"
  unpack "$(source_archive "documentdb-$DOCUMENTDB_TAG.tar.gz" "https://github.com/microsoft/documentdb/archive/refs/tags/$DOCUMENTDB_TAG.tar.gz")" "$src/documentdb"
  # Debian's libbson is 1.23, DocumentDB pins 1.28: the one constant missing is the sensitive subtype.
  local copt='COPT=-DBSON_SUBTYPE_SENSITIVE=0x08 -Wno-error=switch'
  {
    make_install "$src/pg_cron" &&
      make_install "$src/pgvector" &&
      PKG_CONFIG_PATH="$BUILD/pkgconfig" make_install "$src/documentdb/pg_documentdb_core" "$copt" &&
      PKG_CONFIG_PATH="$BUILD/pkgconfig" make_install "$src/documentdb/pg_documentdb" "$copt"
  } >"$STATE/log/documentdb-build.log" 2>&1 || { tail -n 30 "$STATE/log/documentdb-build.log" >&2; return 1; }
  rm -rf "$src/pg_cron" "$src/pgvector" "$src/documentdb"
  log "extensions built and installed in $((SECONDS - started)) s"
}

ferretdb_bin() { echo "$BUILD/bin/ferretdb-$FERRETDB_VERSION"; }

ferretdb_compile() {
  local bin dir started=$SECONDS
  bin=$(ferretdb_bin)
  [ -x "$bin" ] && return 0
  need_go FerretDB
  log "building FerretDB $FERRETDB_VERSION from the Go module proxy (once per machine)"
  dir="$BUILD/src/ferretdb"
  mkdir -p "$BUILD/bin" "$BUILD/src"
  # `go install pkg@version` asks the proxy for the module's version list, which the proxy here
  # refuses; downloading the exact version and building a copy of it avoids that request. The module
  # lacks the version.txt FerretDB's release build generates and embeds (it panics at start without
  # it). And v2.5.0 defines setGOMAXPROCS only for Go before 1.25, which sets GOMAXPROCS from the
  # container's CPU quota by itself: on 1.25 and later the function has nothing left to do.
  local noop='//go:build go1.25\n\npackage main\n\nimport "log/slog"\n\nfunc setGOMAXPROCS(*slog.Logger) {}\n'
  (
    src=$(go mod download -json "github.com/FerretDB/FerretDB/v2@$FERRETDB_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p') &&
      [ -n "$src" ] && rm -rf "$dir" && cp -r "$src" "$dir" && chmod -R u+w "$dir" &&
      echo "$FERRETDB_VERSION" >"$dir/build/version/version.txt" &&
      printf '%b' "$noop" >"$dir/cmd/ferretdb/gomaxprocs_go125.go" &&
      cd "$dir" && CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" ./cmd/ferretdb
  ) >"$STATE/log/ferretdb-build.log" 2>&1 || { tail -n 20 "$STATE/log/ferretdb-build.log" >&2; return 1; }
  mv "$bin.tmp" "$bin"
  rm -rf "$dir"
  log "FerretDB built in $((SECONDS - started)) s"
}

mongo_tools_compile() { # mongodump and mongorestore: the reference for backup and restore figures
  [ -x "$MONGO_TOOLS/mongodump" ] && [ -x "$MONGO_TOOLS/mongorestore" ] && return 0
  need_go mongo-tools
  log "building mongodump and mongorestore $MONGO_TOOLS_TAG (once per machine)"
  local dir="$BUILD/src/mongo-tools" tool started=$SECONDS
  unpack "$(source_archive "mongo-tools-$MONGO_TOOLS_TAG.tar.xz" "https://github.com/mongodb/mongo-tools/archive/refs/tags/$MONGO_TOOLS_TAG.tar.gz")" "$dir"
  mkdir -p "$MONGO_TOOLS"
  # Its dependencies are vendored, so it builds offline (the Go module proxy refuses this module).
  for tool in mongodump mongorestore; do
    (cd "$dir" && CGO_ENABLED=0 go build -mod=vendor -trimpath \
      -ldflags "-X main.VersionStr=$MONGO_TOOLS_TAG -X main.GitCommit=$MONGO_TOOLS_TAG" \
      -o "$MONGO_TOOLS/$tool.tmp" "./$tool/main") >>"$STATE/log/mongo-tools-build.log" 2>&1 ||
      { tail -n 20 "$STATE/log/mongo-tools-build.log" >&2; return 1; }
    mv "$MONGO_TOOLS/$tool.tmp" "$MONGO_TOOLS/$tool"
  done
  rm -rf "$dir"
  log "mongodump and mongorestore built in $((SECONDS - started)) s"
}

builds() { # everything built once per machine; each step returns at once when its result is there
  with_build_lock documentdb_compile
  with_build_lock ferretdb_compile
  with_build_lock mongo_tools_compile
}

# --------------------------------------------------- FerretDB on PostgreSQL with DocumentDB
ferret_pg_up() {
  port_open "$FERRET_PG_PORT" && return 0
  # FerretDB's recommended settings (its packaging's 10-preload.sh); a write batch as large as the
  # one FerretDB advertises to drivers (100,000; DocumentDB's default of 25,000 fails insertMany of
  # larger arrays); and DocumentDB's connections to its own server (index builds, for one) over the
  # socket, where the superuser is trusted, rather than TCP, where it would need a password.
  pg_cluster_init "$FERRET_PGDATA" "$FERRET_PG_PORT" mongo-postgres <<EOF
shared_preload_libraries = 'pg_cron,pg_documentdb_core,pg_documentdb'
cron.database_name = 'postgres'
documentdb.enableCompact = true
documentdb.enableLetAndCollationForQueryMatch = true
documentdb.enableNowSystemVariable = true
documentdb.enableSortbyIdPushDownToPrimaryKey = true
documentdb.enableSchemaValidation = true
documentdb.enableBypassDocumentValidation = true
documentdb.enableUserCrud = true
documentdb.maxUserLimit = 100
documentdb.maxWriteBatchSize = 100000
documentdb.localhost_connection_string = 'host=$STATE/run'
EOF
  pg_cluster_start "$FERRET_PGDATA" mongo-postgres
  PGOPTIONS='-c client_min_messages=warning' pg_psql "$FERRET_PG_PORT" -d postgres \
    -c 'CREATE EXTENSION IF NOT EXISTS documentdb CASCADE' >/dev/null
}
ferret_pg_down() { pg_cluster_stop "$FERRET_PGDATA"; }

ferretdb_start() {
  mkdir -p "$STATE/ferretdb"
  # No authentication of MongoDB clients, who reach it on loopback only.
  nohup "$(ferretdb_bin)" --listen-addr="127.0.0.1:$MONGO_PORT" \
    --postgresql-url="$(ferret_pg_url)" \
    --no-auth --state-dir="$STATE/ferretdb" --telemetry=disable --log-level=warn --debug-addr= \
    >"$STATE/log/mongo.log" 2>&1 &
  echo $! >"$STATE/run/mongo.pid"
  wait_port mongo "$MONGO_PORT" 60
}

mongo_up() {
  port_open "$MONGO_PORT" && port_open "$FERRET_PG_PORT" && return 0
  ferret_pg_up
  # The server an earlier version of this script started (mongo-java-server) gives way to FerretDB.
  if port_open "$MONGO_PORT" && [ -f "$STATE/run/mongo.pid" ] &&
    ! grep -qs ferretdb "/proc/$(cat "$STATE/run/mongo.pid")/cmdline"; then
    log "stopping the MongoDB-compatible server an earlier services.sh started; FerretDB replaces it"
    mongo_down
  fi
  port_open "$MONGO_PORT" || ferretdb_start
}
mongo_down() { # waits for FerretDB to exit, so that a restart can take its port
  local pid
  [ -f "$STATE/run/mongo.pid" ] || return 0
  pid=$(cat "$STATE/run/mongo.pid")
  kill "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

# ----------------------------------------------------------------------------------------- S3
s3_up() {
  port_open "$S3_PORT" && return 0
  local node="$ROOT/node_modules/.bin/node" s3rver="$ROOT/node_modules/s3rver/bin/s3rver.js"
  [ -f "$s3rver" ] || (cd "$ROOT" && npm ci --no-audit --no-fund >"$STATE/log/npm.log" 2>&1)
  mkdir -p "$STATE/s3"
  # s3rver's continuation tokens (listings of more than a page) use DES, which Node's OpenSSL 3 only
  # has in its legacy provider: without it every truncated listing answers 500.
  nohup "$node" --openssl-legacy-provider "$s3rver" --directory "$STATE/s3" --address 127.0.0.1 --port "$S3_PORT" \
    --configure-bucket dbfleet --silent >"$STATE/log/s3.log" 2>&1 &
  echo $! >"$STATE/run/s3.pid"
  wait_port s3 "$S3_PORT" 20
}
s3_down() { [ -f "$STATE/run/s3.pid" ] && kill "$(cat "$STATE/run/s3.pid")" 2>/dev/null || true; }

docker_wanted() { [ "${DBFLEET_USE_DOCKER:-0}" = 1 ] && docker info >/dev/null 2>&1; }

all_up() {
  port_open "$REDIS_PORT" && port_open "$PG_PORT" && port_open "$FERRET_PG_PORT" &&
    port_open "$MONGO_PORT" && port_open "$S3_PORT" &&
    [ -x "$MONGO_TOOLS/mongodump" ] && [ -x "$MONGO_TOOLS/mongorestore" ]
}

status() {
  local name port
  for pair in redis:$REDIS_PORT postgres:$PG_PORT mongo:$MONGO_PORT mongo-postgres:$FERRET_PG_PORT s3:$S3_PORT; do
    name=${pair%%:*} port=${pair##*:}
    if port_open "$port"; then echo "$name up (127.0.0.1:$port)"; else echo "$name down"; fi
  done
}

case "${1:-up}" in
  up)
    if docker_wanted; then
      docker compose -f "$ROOT/docker-compose.yml" up -d --wait redis postgres mongo minio >&2
    elif ! all_up; then
      # Packages and builds first: no cluster may be running when the server's packages change.
      pg_server_install
      builds
      redis_up
      pg_up
      mongo_up
      s3_up
    else
      redis_up # re-asserts Redis's durability settings, which someone may have switched off
    fi
    print_env
    ;;
  build) pg_server_install; builds ;;
  env) print_env ;;
  status) status ;;
  down) s3_down; mongo_down; ferret_pg_down; redis_down; pg_down ;;
  stop)
    case "${2:-}" in
      postgres) pg_down ;;
      redis) redis_down ;;
      mongo) mongo_down ;;
      mongo-postgres) ferret_pg_down ;;
      s3) s3_down ;;
      *) echo "usage: $0 stop postgres|redis|mongo|mongo-postgres|s3" >&2; exit 2 ;;
    esac
    ;;
  restart)
    case "${2:-}" in
      postgres) pg_down; pg_up ;;
      redis) redis_down; sleep 0.2; redis_up ;;
      mongo) mongo_down; mongo_up ;;
      mongo-postgres) ferret_pg_down; ferret_pg_up ;;
      s3) s3_down; sleep 0.2; s3_up ;;
      *) echo "usage: $0 restart postgres|redis|mongo|mongo-postgres|s3" >&2; exit 2 ;;
    esac
    ;;
  *) echo "usage: $0 up|env|status|down|restart <service>|stop <service>" >&2; exit 2 ;;
esac
