#!/bin/bash
# diskwatch add-on entry point (PID 1 of the container: config.yaml has init: false, and
# the agent handles SIGTERM itself). Maps the add-on options (/data/options.json, written
# by the Supervisor before every start) and the Supervisor's MQTT service to a diskwatch
# configuration file, then runs the agent.
#
# Needs bash, jq and curl only (the Dockerfile installs them), no bashio: the Supervisor
# API is asked with curl and the token the Supervisor puts in the environment
# (SUPERVISOR_TOKEN), at SUPERVISOR_API (default http://supervisor, the name the
# Supervisor maps in every add-on's /etc/hosts; bashio honours the same variable).
#
# For tests, ADDON_OPTIONS (the options file), ADDON_CONFIG_PATH (where the configuration
# is written), ADDON_STATE_DIR, ADDON_BIN and ADDON_COMMAND (e.g. check-config) can be
# set; the add-on never sets them. (Not DISKWATCH_*: the agent reads those as
# configuration keys.)
set -euo pipefail

OPTIONS="${ADDON_OPTIONS:-/data/options.json}"
CONFIG="${ADDON_CONFIG_PATH:-/data/diskwatch.toml}"
BIN="${ADDON_BIN:-/usr/bin/diskwatch}"
COMMAND="${ADDON_COMMAND:-run}"
STATE_DIR="${ADDON_STATE_DIR:-/data/diskwatch}"
SUPERVISOR="${SUPERVISOR_API:-http://supervisor}"

log() {
    printf '[%(%H:%M:%S)T] %s: %s\n' -1 "$1" "$2" >&2
}
fatal() {
    log FATAL "$1"
    exit 1
}

[ -r "${OPTIONS}" ] || fatal "cannot read the add-on options (${OPTIONS})"
# All options in one jq run (each jq start costs more than the rest of this script): as
# shell-quoted assignments to opt_<name>, names restricted to what a variable may be called.
assignments="$(jq -r 'if type != "object" then error("not a JSON object") else
    to_entries[] | select(.key | test("^[A-Za-z_][A-Za-z0-9_]*$"))
    | "opt_\(.key)=\(if .value == null then "" else .value | tostring end | @sh)" end' "${OPTIONS}")" \
    || fatal "${OPTIONS} is not a JSON object of options"
eval "${assignments}"

# One option as text; empty when it is missing or null.
option() {
    local name="opt_$1"
    printf '%s' "${!name:-}"
}
option_true() {
    [ "$(option "$1")" = "true" ]
}

# A TOML basic string: backslashes and quotes escaped, control characters dropped.
toml_str() {
    local s="${1//\\/\\\\}"
    s="${s//\"/\\\"}"
    s="$(printf '%s' "$s" | tr -d '\000-\037')"
    printf '"%s"' "$s"
}

# GET on the Supervisor API: succeeds when the Supervisor answered {"result": "ok"}, with
# the answer's `data` object in SUPERVISOR_DATA; otherwise fails with the reason (as the
# Supervisor words it) in SUPERVISOR_ERROR. Globals, not output: a $(...) subshell would
# lose the reason.
SUPERVISOR_DATA=""
SUPERVISOR_ERROR=""
supervisor_get() {
    SUPERVISOR_DATA=""
    SUPERVISOR_ERROR=""
    if [ -z "${SUPERVISOR_TOKEN:-}" ]; then
        SUPERVISOR_ERROR="no SUPERVISOR_TOKEN in the environment (not started by the Supervisor)"
        return 1
    fi
    local response status body
    response="$(curl -sS --max-time 10 -w '\n%{http_code}' \
        -H "Authorization: Bearer ${SUPERVISOR_TOKEN}" "${SUPERVISOR}$1" 2>&1)" || {
        SUPERVISOR_ERROR="${response}"
        return 1
    }
    status="${response##*$'\n'}"
    body="${response%$'\n'*}"
    if [ "${status}" = "200" ] \
        && SUPERVISOR_DATA="$(jq -ce 'select(.result == "ok") | .data // {}' <<<"${body}" 2>/dev/null)"; then
        return 0
    fi
    SUPERVISOR_ERROR="HTTP ${status}$(jq -r '.message // empty | ": " + .' <<<"${body}" 2>/dev/null || true)"
    return 1
}

log_level="$(option log_level)"
emit_initial="$(option emit_initial)"
discovery_prefix="$(option discovery_prefix)"
node_id="$(option node_id)"
smart=true
if [ -n "$(option smart)" ] && ! option_true smart; then
    smart=false
fi

# What the Supervisor granted this add-on (its own info needs no hassio_api). Device
# access without protection mode off is not granted even when config.yaml asks for it.
granted=""
withheld=false
if supervisor_get /addons/self/info; then
    eval "$(jq -r '@sh "granted=\("privileged \(.privileged // [] | join(",") | if . == "" then "none" else . end), full_access \(.full_access), protected \(.protected)")",
        @sh "withheld=\(.full_access == true and .protected == true)"' <<<"${SUPERVISOR_DATA}")"
    log INFO "Supervisor grants: ${granted}"
    if [ "${withheld}" = "true" ]; then
        log WARNING "Protection mode is on, so the Supervisor does not give this add-on its full device access: SMART of the system disk and the actions will fail. Turn protection mode off on the add-on's Info tab."
    fi
else
    log WARNING "Cannot read the add-on's info from the Supervisor (${SUPERVISOR_ERROR})"
fi

# Ingress reaches a host-network add-on on the hassio bridge's host address. Only the
# ingress proxy (172.30.32.2, which authenticates Home Assistant users itself) may
# ask: other add-ons on the hassio network are refused by allow_from.
INGRESS_PROXY="172.30.32.2"
listen="172.30.32.1:8377"
http_security="allow_anonymous = true
allow_from = [\"${INGRESS_PROXY}\"]"
if option_true api_on_lan; then
    # On the LAN every client needs the token from the add-on options; the ingress
    # proxy still needs none (the sidebar panel keeps working).
    api_token="$(option api_token)"
    if [ -z "${api_token}" ]; then
        fatal "api_on_lan needs api_token (at least 32 characters, e.g. from: openssl rand -hex 32)"
    fi
    listen="0.0.0.0:8377"
    token_file="${STATE_DIR}/api_token"
    mkdir -p "${STATE_DIR}"
    (umask 077 && printf '%s\n' "${api_token}" >"${token_file}")
    http_security="auth_token_file = $(toml_str "${token_file}")
anonymous_from = [\"${INGRESS_PROXY}\"]"
fi

mqtt_enabled=false
mqtt_url=""
mqtt_user=""
mqtt_pass=""
if [ -n "$(option mqtt_url)" ]; then
    mqtt_enabled=true
    mqtt_url="$(option mqtt_url)"
    mqtt_user="$(option mqtt_username)"
    mqtt_pass="$(option mqtt_password)"
    log INFO "Using the MQTT broker from the add-on options: ${mqtt_url}"
elif supervisor_get /services/mqtt; then
    mqtt_enabled=true
    eval "$(jq -r '@sh "mqtt_url=\(if .ssl == true then "mqtts" else "mqtt" end)://\(.host):\(.port)",
        @sh "mqtt_user=\(.username // "")", @sh "mqtt_pass=\(.password // "")"' <<<"${SUPERVISOR_DATA}")"
    log INFO "Using the Supervisor's MQTT service at ${mqtt_url}"
else
    log WARNING "No MQTT broker (${SUPERVISOR_ERROR}): Home Assistant discovery is off (install Mosquitto or set mqtt_url)"
fi

udev_include="[]"
if option_true include_loop_devices; then
    udev_include='["loop*"]'
fi

# Actions: only the "with actions" variant of the add-on has these options (and the
# privileges they need); packaging/homeassistant/actions_variant.py makes it from this one.
actions_section="[actions]
enabled = false"
allow=""
for action in unmount eject spin_down mount; do
    if option_true "action_${action}"; then
        allow="${allow:+${allow}, }\"${action}\""
    fi
done
if [ -n "${allow}" ]; then
    mount_root="$(option mount_root)"
    actions_section="[actions]
enabled = true
allow = [${allow}]
mount_root = $(toml_str "${mount_root:-/media/diskwatch}")"
    log INFO "Actions enabled: ${allow} (Home Assistant buttons; HTTP needs the API token)"
fi

mkdir -p "$(dirname "${CONFIG}")" "${STATE_DIR}"
umask 077
cat >"${CONFIG}" <<TOML
# Written by the diskwatch add-on from ${OPTIONS} at every start.
log_level = $(toml_str "${log_level}")
node_id = $(toml_str "${node_id}")
state_dir = $(toml_str "${STATE_DIR}")
emit_initial = ${emit_initial:-false}

[http]
listen = $(toml_str "${listen}")
${http_security}

[udev]
include = ${udev_include}

[mounts]
mountinfo = "/proc/self/mountinfo"

[shares]
enabled = false

[health]
enabled = ${smart}

[mqtt]
enabled = ${mqtt_enabled}
url = $(toml_str "${mqtt_url:-mqtt://127.0.0.1:1883}")
username = $(toml_str "${mqtt_user}")
password = $(toml_str "${mqtt_pass}")
discovery_prefix = $(toml_str "${discovery_prefix}")

${actions_section}
TOML

log INFO "Starting diskwatch (HTTP ${listen}, log level ${log_level}, SMART ${smart})"
exec "${BIN}" "${COMMAND}" --config "${CONFIG}"
