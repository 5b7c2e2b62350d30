#!/usr/bin/env python3
"""A real Home Assistant for tests/ha_real.rs: its config directory, and a client of its
websocket API.

    ha_real.py setup <config_dir> <mqtt_port> <http_port>
        Writes a minimal configuration.yaml (config and websocket_api: no default_config, so
        HA starts in seconds) and, in .storage, HTTP on 127.0.0.1:<http_port>, an MQTT config entry on
        127.0.0.1:<mqtt_port> (discovery on, prefix homeassistant) and an owner user with a
        long-lived access token. Prints the access token.

    ha_real.py client <http_port> <token>
        Connects to ws://127.0.0.1:<http_port>/api/websocket and authenticates. Then reads
        commands, one JSON object per line on stdin ({"type": "get_states"}, ...), and writes
        each answer as one line {"id": n, "result": ...} on stdout. It also subscribes to
        state_changed and writes {"event": {"entity_id", "state", "at"}} lines as they come,
        `at` being the time (Unix seconds) the change was fired in Home Assistant.

Runs in Home Assistant's own venv (it uses aiohttp and PyJWT from there).
"""

import asyncio
import json
import os
import secrets
import sys
import time
import uuid
from datetime import datetime, timezone

CONFIGURATION = """\
homeassistant:
  name: diskwatch test
  unit_system: metric
  time_zone: UTC
  latitude: 0
  longitude: 0
  elevation: 0
config:
websocket_api:
logger:
  default: info
"""


def storage(key, data, version=1, minor_version=1):
    return {"version": version, "minor_version": minor_version, "key": key, "data": data}


def setup(config_dir, mqtt_port, http_port):
    store = os.path.join(config_dir, ".storage")
    os.makedirs(store, exist_ok=True)
    with open(os.path.join(config_dir, "configuration.yaml"), "w") as f:
        f.write(CONFIGURATION)
    now = datetime.now(timezone.utc).isoformat()
    # Since 2026.x the HTTP settings live in .storage/http ("stable" is the confirmed config;
    # YAML would be migrated as a "pending" trial that reverts, and restarts HA, after 5 min).
    http = {
        "stable": {
            "server_port": int(http_port),
            "server_host": ["127.0.0.1"],
            "cors_allowed_origins": [],
            "login_attempts_threshold": -1,
            "ip_ban_enabled": False,
            "ssl_profile": "intermediate_v6",
            "use_x_frame_options": True,
            "created_at": now,
            "error": None,
            "error_message": None,
        },
        "pending": None,
        "yaml_migration_done": True,
    }
    write(store, "http", storage("http", http, 3, 1))
    entry = {
        "created_at": now,
        "modified_at": now,
        "data": {"broker": "127.0.0.1", "port": int(mqtt_port)},
        "discovery_keys": {},
        "disabled_by": None,
        "domain": "mqtt",
        "entry_id": uuid.uuid4().hex,
        "minor_version": 1,
        "options": {"discovery": True, "discovery_prefix": "homeassistant"},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "subentries": [],
        "title": "127.0.0.1",
        "unique_id": None,
        "version": 2,
    }
    write(store, "core.config_entries", storage("core.config_entries", {"entries": [entry]}, 1, 5))
    user_id, token_id, jwt_key = uuid.uuid4().hex, uuid.uuid4().hex, secrets.token_hex(64)
    auth = {
        "users": [
            {
                "id": user_id,
                "group_ids": ["system-admin"],
                "is_owner": True,
                "is_active": True,
                "name": "Owner",
                "system_generated": False,
                "local_only": False,
            }
        ],
        "groups": [
            {"id": "system-admin", "name": "Administrators"},
            {"id": "system-users", "name": "Users"},
            {"id": "system-read-only", "name": "Read Only"},
        ],
        "credentials": [],
        "refresh_tokens": [
            {
                "id": token_id,
                "user_id": user_id,
                "client_id": None,
                "client_name": "diskwatch test",
                "client_icon": None,
                "token_type": "long_lived_access_token",
                "created_at": now,
                "access_token_expiration": 3650 * 86400.0,
                "token": secrets.token_hex(64),
                "jwt_key": jwt_key,
                "last_used_at": None,
                "last_used_ip": None,
                "expire_at": None,
                "version": None,
            }
        ],
    }
    write(store, "auth", storage("auth", auth))
    # The onboarding is done: no onboarding views, the owner exists.
    done = {"done": ["user", "core_config", "analytics", "integration"]}
    write(store, "onboarding", storage("onboarding", done, 4))
    import jwt  # Home Assistant's own PyJWT

    issued = int(time.time())
    token = jwt.encode({"iss": token_id, "iat": issued, "exp": issued + 3650 * 86400}, jwt_key, algorithm="HS256")
    print(token)


def write(store, name, body):
    with open(os.path.join(store, name), "w") as f:
        json.dump(body, f, indent=2)


async def client(http_port, token):
    import aiohttp

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{http_port}/api/websocket", max_msg_size=0) as ws:
            hello = await ws.receive_json()
            assert hello["type"] == "auth_required", hello
            await ws.send_json({"type": "auth", "access_token": token})
            answer = await ws.receive_json()
            if answer["type"] != "auth_ok":
                print(json.dumps({"error": answer}), flush=True)
                return 1
            await ws.send_json({"id": 1, "type": "subscribe_events", "event_type": "state_changed"})
            next_id = 2

            async def commands():
                nonlocal next_id
                while line := await reader.readline():
                    command = json.loads(line)
                    command["id"] = next_id
                    next_id += 1
                    await ws.send_json(command)
                await ws.close()

            task = asyncio.create_task(commands())
            print(json.dumps({"ready": True}), flush=True)
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                body = json.loads(msg.data)
                if body.get("type") == "event":
                    data = body["event"]["data"]
                    new = data.get("new_state") or {}
                    fired = datetime.fromisoformat(body["event"]["time_fired"]).timestamp()
                    line = {"entity_id": data["entity_id"], "state": new.get("state"), "at": fired}
                    print(json.dumps({"event": line}), flush=True)
                elif body.get("type") == "result" and body["id"] != 1:
                    print(json.dumps({"id": body["id"], "success": body["success"], "result": body.get("result"),
                                      "error": body.get("error")}), flush=True)
            task.cancel()
    return 0


def main():
    if sys.argv[1] == "setup":
        setup(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    if sys.argv[1] == "client":
        return asyncio.run(client(sys.argv[2], sys.argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
