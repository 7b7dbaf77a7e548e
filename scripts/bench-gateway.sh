# Sourced by the benchmark scripts: a fresh gateway for one measurement.
#
#   start_gateway BIN WORK POLICY_TEXT [AGENT_FLAGS...]
#
# Writes POLICY_TEXT as WORK/policies/p.cedar and a config with SQLite in
# WORK, adds an admin `olga` and an agent `bench` (owned by olga, with
# AGENT_FLAGS, e.g. `--gate mcp`), starts `BIN serve` in the background and
# sets `url`, `token` and `server` (its pid; the caller's trap kills it).
start_gateway() {
  local bin="$1" work="$2" policy="$3"
  shift 3
  mkdir -p "$work/policies"
  printf '%s\n' "$policy" > "$work/policies/p.cedar"
  cat > "$work/signoff.toml" <<TOML
listen = "127.0.0.1:0"
database = "sqlite://$work/signoff.db"
policies = "$work/policies"
TOML
  "$bin" principal add user olga --role admin --config "$work/signoff.toml" >/dev/null
  token="$("$bin" principal add agent bench --owner olga "$@" --config "$work/signoff.toml")"
  "$bin" serve --config "$work/signoff.toml" >"$work/serve.out" 2>"$work/serve.log" &
  server=$!
  url=""
  for _ in $(seq 100); do
    url="$(sed -n 's/^signoff listening on \(http[^ ]*\).*/\1/p' "$work/serve.out")"
    [ -n "$url" ] && return 0
    sleep 0.1
  done
  cat "$work/serve.log" >&2
  return 1
}
