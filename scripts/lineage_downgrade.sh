#!/usr/bin/env bash
# Convert a project home's lineage.duckdb written by DuckDB 2.0 (sparkle before the DuckLake backend)
# into the pinned DuckDB's format: EXPORT DATABASE with a throwaway DuckDB 2.0 environment, IMPORT
# DATABASE with the project's. The old file is kept as lineage.duckdb.v2 until you delete it.
# Usage: scripts/lineage_downgrade.sh HOME   (e.g. .sparkle); no run may use HOME meanwhile.
set -euo pipefail
home="$(cd "${1:?usage: $0 HOME}" && pwd)"
db="$home/lineage.duckdb"
[ -f "$db" ] || { echo "no lineage database at $db" >&2; exit 2; }
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="${SPARKLE_PYTHON:-$repo/.venv/bin/python}"
work="$(mktemp -d "$home/.lineage-downgrade.XXXXXX")"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv2"
"$work/venv2/bin/pip" install -q duckdb==2.0.0
"$work/venv2/bin/python" - "$db" "$work/export" <<'PY'
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute(f"EXPORT DATABASE '{sys.argv[2]}' (FORMAT parquet)")
PY
"$py" - "$work/export" "$work/lineage.duckdb" <<'PY'
import sys, duckdb
con = duckdb.connect(sys.argv[2])
con.execute(f"IMPORT DATABASE '{sys.argv[1]}'")
con.close()
PY
mv "$db" "$db.v2"
mv "$work/lineage.duckdb" "$db"
echo "converted $db (the DuckDB 2.0 file is kept as $db.v2)"
