#!/usr/bin/env bash
# The quickstart: services, the fleet (a worker and the board) and a demo tenant loaded with
# synthetic data, all on loopback. Idempotent: running it again reuses what is there.
#
#   scripts/dev.sh            start everything (DEMO_SCALE=10000 rows of users by default)
#   scripts/dev.sh down       stop the worker and the board (services keep running: services.sh down)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN="$ROOT/.dbfleet"
SCALE=${DEMO_SCALE:-10000}
DEMO="$RUN/fixtures/demo" # the demo tenant's folder under DBFLEET_FILE_ROOTS
mkdir -p "$RUN/logs" "$DEMO"

stop() { for p in worker board; do [ -f "$RUN/$p.pid" ] && kill "$(cat "$RUN/$p.pid")" 2>/dev/null; rm -f "$RUN/$p.pid"; done; }
if [ "${1:-up}" = down ]; then stop; exit 0; fi

[ -x node_modules/.bin/node ] || npm ci --no-audit --no-fund
eval "$(scripts/services.sh up)"
export DBFLEET_FILE_ROOTS="$RUN/fixtures/{tenant}" DBFLEET_LOG_LEVEL=${DBFLEET_LOG_LEVEL:-info}

bin/dbfleet tenants add demo
for d in users:$SCALE playlists:$((SCALE / 2)) sessions:$SCALE listening_events:$((SCALE * 10)); do
  name=${d%%:*} rows=${d##*:} file="$DEMO/$name-$rows.ndjson"
  [ -f "$file" ] || bin/dbfleet demo generate --dataset "$name" --scale "$rows" --seed 42 --out "$file"
done

stop
nohup bin/dbfleet worker --concurrency 2 >"$RUN/logs/worker.log" 2>&1 & echo $! >"$RUN/worker.pid"
nohup bin/dbfleet board >"$RUN/logs/board.log" 2>&1 & echo $! >"$RUN/board.pid"

# Users before playlists (foreign key). Everything is upserted by key, so a run at another scale is
# harmless. The idempotency key returns a repeated load's finished job.
load() { # store target mode key file
  bin/dbfleet enqueue load-fixtures --wait --key "demo-$3-$2-$SCALE" \
    "{\"tenant\":\"demo\",\"target\":{\"store\":\"$1\",\"name\":\"$2\"},\"schema\":\"$2\",\"mode\":\"$3\",\"key\":[\"$4\"],\"source\":{\"type\":\"file\",\"path\":\"$5\"}}" |
    tr -d '\n' | sed 's/  */ /g'
  echo
}
load postgres users upsert id "$DEMO/users-$SCALE.ndjson"
load postgres playlists upsert id "$DEMO/playlists-$((SCALE / 2)).ndjson"
load mongo sessions upsert _id "$DEMO/sessions-$SCALE.ndjson"
load mongo listening_events upsert _id "$DEMO/listening_events-$((SCALE * 10)).ndjson"

cat <<EOF

dbfleet is running on loopback:
  board      http://127.0.0.1:${DBFLEET_BOARD_PORT:-3000}/board   (metrics: /metrics, health: /healthz /readyz)
  logs       $RUN/logs/worker.log, $RUN/logs/board.log
  CLI        eval "\$(scripts/services.sh env)"; bin/dbfleet queues list
  stop       scripts/dev.sh down; scripts/services.sh down
EOF
