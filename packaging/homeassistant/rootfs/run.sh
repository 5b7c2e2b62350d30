#!/usr/bin/with-contenv bashio
# shellcheck shell=bash
# diskwatch add-on entry point: maps /data/options.json and the Supervisor's
# MQTT service to a diskwatch configuration file, then runs the agent.
#
# For tests, ADDON_CONFIG_PATH (where the file is written), ADDON_STATE_DIR, ADDON_BIN
# and ADDON_COMMAND (e.g. check-config) can be set; the add-on never sets them.
# (Not DISKWATCH_*: the agent reads those as configuration keys.)
set -euo pipefail

CONFIG="${ADDON_CONFIG_PATH:-/data/diskwatch.toml}"
BIN="${ADDON_BIN:-/usr/bin/diskwatch}"
COMMAND="${ADDON_COMMAND:-run}"
STATE_DIR="${ADDON_STATE_DIR:-/data/diskwatch}"

# A TOML basic string: backslashes and quotes escaped, control characters dropped.
toml_str() {
    local s="${1//\\/\\\\}"
    s="${s//\"/\\\"}"
    s="$(printf '%s' "$s" | tr -d '\000-\037')"
    printf '"%s"' "$s"
}

log_level="$(bashio::config 'log_level')"
emit_initial="$(bashio::config 'emit_initial')"
include_loop="$(bashio::config 'include_loop_devices')"
api_on_lan="$(bashio::config 'api_on_lan')"
discovery_prefix="$(bashio::config 'discovery_prefix')"
node_id=""
if bashio::config.has_value 'node_id'; then
    node_id="$(bashio::config 'node_id')"
fi

# Ingress reaches a host-network add-on on the hassio bridge's host address. Only the
# ingress proxy (172.30.32.2, which authenticates Home Assistant users itself) may
# ask: other add-ons on the hassio network are refused by allow_from.
INGRESS_PROXY="172.30.32.2"
listen="172.30.32.1:8377"
http_security="allow_anonymous = true
allow_from = [\"${INGRESS_PROXY}\"]"
if bashio::var.true "${api_on_lan}"; then
    # On the LAN every client needs the token from the add-on options; the ingress
    # proxy still needs none (the sidebar panel keeps working).
    if ! bashio::config.has_value 'api_token'; then
        bashio::exit.nok "api_on_lan needs api_token (at least 32 characters, e.g. from: openssl rand -hex 32)"
    fi
    listen="0.0.0.0:8377"
    token_file="${STATE_DIR}/api_token"
    mkdir -p "${STATE_DIR}"
    (umask 077 && bashio::config 'api_token' > "${token_file}")
    http_security="auth_token_file = $(toml_str "${token_file}")
anonymous_from = [\"${INGRESS_PROXY}\"]"
fi

mqtt_enabled=false
mqtt_url=""
mqtt_user=""
mqtt_pass=""
if bashio::config.has_value 'mqtt_url'; then
    mqtt_enabled=true
    mqtt_url="$(bashio::config 'mqtt_url')"
    if bashio::config.has_value 'mqtt_username'; then
        mqtt_user="$(bashio::config 'mqtt_username')"
    fi
    if bashio::config.has_value 'mqtt_password'; then
        mqtt_pass="$(bashio::config 'mqtt_password')"
    fi
    bashio::log.info "Using the MQTT broker from the add-on options: ${mqtt_url}"
elif bashio::services.available 'mqtt'; then
    mqtt_enabled=true
    scheme="mqtt"
    if bashio::var.true "$(bashio::services 'mqtt' 'ssl')"; then
        scheme="mqtts"
    fi
    mqtt_url="${scheme}://$(bashio::services 'mqtt' 'host'):$(bashio::services 'mqtt' 'port')"
    mqtt_user="$(bashio::services 'mqtt' 'username')"
    mqtt_pass="$(bashio::services 'mqtt' 'password')"
    bashio::log.info "Using the Supervisor's MQTT service at ${mqtt_url}"
else
    bashio::log.warning "No MQTT broker: Home Assistant discovery is off (install Mosquitto or set mqtt_url)"
fi

udev_include="[]"
if bashio::var.true "${include_loop}"; then
    udev_include='["loop*"]'
fi

mkdir -p "$(dirname "${CONFIG}")" "${STATE_DIR}"
umask 077
cat > "${CONFIG}" <<TOML
# Written by the diskwatch add-on from /data/options.json at every start.
log_level = $(toml_str "${log_level}")
node_id = $(toml_str "${node_id}")
state_dir = $(toml_str "${STATE_DIR}")
emit_initial = ${emit_initial}

[http]
listen = $(toml_str "${listen}")
${http_security}

[udev]
include = ${udev_include}

[mounts]
mountinfo = "/proc/self/mountinfo"

[shares]
enabled = false

[mqtt]
enabled = ${mqtt_enabled}
url = $(toml_str "${mqtt_url:-mqtt://127.0.0.1:1883}")
username = $(toml_str "${mqtt_user}")
password = $(toml_str "${mqtt_pass}")
discovery_prefix = $(toml_str "${discovery_prefix}")
TOML

bashio::log.info "Starting diskwatch (HTTP ${listen}, log level ${log_level})"
exec "${BIN}" "${COMMAND}" --config "${CONFIG}"
