#!/usr/bin/env bash
# The standard chat-turn scenarios (`make bench`), then the conversations API. Each chat-turn run
# starts its own `frontdesk serve --demo`, is bounded by --timeout-s (load) and by `timeout` (whole
# run), and writes bench/results/chat_turn-<db>-<visitors>v-<think>ms.json. Extra arguments go
# to every chat-turn run (e.g. `bench/run_all.sh --no-pin`). PostgreSQL: FD_BENCH_DATABASE_URL (the
# bench creates and drops a database named fd_bench on that server, and the conversations bench
# one named frontdesk_bench_conv); those scenarios are skipped if it is not reachable.
set -uo pipefail

cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
PG_URL="${FD_BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/fd_bench}"
LOAD_TIMEOUT_S="${FD_BENCH_TIMEOUT_S:-120}"
RUN_TIMEOUT_S=$((LOAD_TIMEOUT_S + 120))
failed=()
skipped=()

scenario() {
    local name="$1"
    shift
    echo "== ${name}"
    # SIGTERM lets the bench stop its server and drop its database; SIGKILL 30 s later if stuck.
    # --foreground: the bench stays in our process group, so Ctrl-C and group kills reach it.
    if ! timeout --foreground --signal=TERM --kill-after=30 "${RUN_TIMEOUT_S}" \
        "${PY}" -m bench.chat_turn --timeout-s "${LOAD_TIMEOUT_S}" "$@"; then
        failed+=("${name}")
    fi
    echo
}

pg_reachable() {
    "${PY}" - "${PG_URL}" <<'PYEOF'
import asyncio, sys
from urllib.parse import urlsplit, urlunsplit
import asyncpg
url = urlunsplit(urlsplit(sys.argv[1])._replace(scheme="postgresql", path="/postgres"))
async def ping() -> None:
    conn = await asyncpg.connect(url, timeout=5)
    await conn.close()
asyncio.run(ping())
PYEOF
}

scenario "sqlite, 100 visitors, think 1000 ms" --visitors 100 --messages 5 --think-ms 1000 "$@"
scenario "sqlite, 100 visitors, closed loop" --visitors 100 --messages 3 --think-ms 0 "$@"
if pg_reachable 2>/dev/null; then
    scenario "postgres, 100 visitors, think 1000 ms" \
        --visitors 100 --messages 5 --think-ms 1000 --database-url "${PG_URL}" "$@"
else
    echo "== postgres, 100 visitors, think 1000 ms: skipped (PostgreSQL not reachable at ${PG_URL})"
    skipped+=("postgres")
fi

# The conversations API at 100k conversations and 1M messages (bench/conversations_api.py): seeds
# the database frontdesk_bench_conv on the same server by COPY, measures, drops it.
CONV_URL="$("${PY}" -c 'import sys; from urllib.parse import urlsplit, urlunsplit; u = urlsplit(sys.argv[1]); print(urlunsplit(u._replace(path="/frontdesk_bench_conv")))' "${PG_URL}")"
if pg_reachable 2>/dev/null; then
    echo "== conversations API, postgres, 100k conversations, 1M messages"
    if ! timeout --foreground --signal=TERM --kill-after=30 1800 \
        "${PY}" -m bench.conversations_api --database-url "${CONV_URL}"; then
        failed+=("conversations API")
    fi
    echo
else
    echo "== conversations API: skipped (PostgreSQL not reachable at ${PG_URL})"
    skipped+=("conversations API")
fi

if ((${#skipped[@]})); then
    echo "skipped: ${skipped[*]}" >&2
fi
if ((${#failed[@]})); then
    echo "not clean: ${failed[*]}" >&2
    exit 1
fi
echo "every scenario that ran was clean; results in bench/results/"
