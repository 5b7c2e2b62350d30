#!/usr/bin/env python3
"""Validates MQTT discovery messages with Home Assistant's own schemas.

Input: a JSON file holding a list of {"topic": ..., "payload": ...} as the
agent published them (retained, under the discovery prefix). Each message goes
through the steps Home Assistant's MQTT discovery takes (topic matcher,
abbreviation expansion, device-discovery schema, origin schema, shared-option
merge) and then the platform's DISCOVERY_SCHEMA. Keys that the schema would
silently drop (REMOVE_EXTRA) are reported as errors too, except keys this
Home Assistant release predates (listed in NEWER_KEYS with the release that
brought them: a release that should know such a key and drops it fails).

Every entity's keys are also checked against the release that brought them (SINCE): none may
need a newer Home Assistant than the minimum the docs state (MINIMUM).

Usage: ha_validate.py <messages.json> [discovery_prefix]. Exit 0 when all pass.
"""

import asyncio
import copy
import importlib
import json
import sys
import tempfile

# Home Assistant first: recent releases install their own voluptuous replacement on import.
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.helpers import frame
from homeassistant.components.mqtt import discovery as disc
from homeassistant.components.mqtt.schemas import DEVICE_DISCOVERY_SCHEMA, MQTT_ORIGIN_INFO_SCHEMA, SHARED_OPTIONS

import voluptuous as vol  # noqa: E402 (after homeassistant, see above)

# Options newer than some Home Assistant releases, with the release that brought them:
# dropped, not rejected, by older ones.
NEWER_KEYS = {"default_entity_id": (2025, 10)}

# The oldest Home Assistant the agent's payloads are valid for, per discovery form (README and
# docs/mqtt.md state the same). Each payload is checked against SINCE below: a key that needs
# a newer release than the stated minimum is an error, so the minimum cannot drift silently.
MINIMUM = {"device": (2024, 11), "component": (2024, 9)}

# The release that brought what the agent uses, where it is newer than 2023.1; older releases
# reject these (vol.Invalid: "extra keys not allowed"), except keys in NEWER_KEYS, dropped.
# (component or "*", key or None for the platform itself) -> (year, month). Sources: Home
# Assistant's release notes and pull requests: device-based discovery 2024.11; sensor
# `options` home-assistant/core#123248 (2024.9; 2024.3 rejects the power-state sensor);
# device `serial_number` core#108069 (2024.2); sensor `suggested_display_precision`
# core#87129 (2023.3); the `event` platform and `origin` 2023.8.
SINCE = {
    ("device", None): (2024, 11),
    ("sensor", "options"): (2024, 9),
    ("*", "device.serial_number"): (2024, 2),
    ("sensor", "suggested_display_precision"): (2023, 3),
    ("event", None): (2023, 8),
    ("*", "origin"): (2023, 8),
    ("*", "default_entity_id"): (2025, 10),
}


def needs(component, config):
    """The newest release any key of this entity needs, with the key (None before 2023.1)."""
    found = [((2023, 1), None)]
    keys = set(config) | {f"device.{k}" for k in config.get("device", {})}
    for (comp, key), since in SINCE.items():
        if comp not in ("*", component) or key in NEWER_KEYS:
            continue
        if key is None or key in keys:
            found.append((since, f"{component}.{key}" if key else component))
    return max(found)


def show(version):
    return ".".join(str(p) for p in version)


def release(version):
    return tuple(int(part) for part in version.split(".")[:2])


def platform_schema(component):
    module = importlib.import_module(f"homeassistant.components.mqtt.{component}")
    return module.DISCOVERY_SCHEMA


def check_entity(component, config, where, errors, notes, form):
    since, key = needs(component, config)
    if form == "device":
        since, key = max((since, key), (SINCE[("device", None)], "device-based discovery"))
    if since > MINIMUM[form]:
        errors.append(f"{where}: {key} needs Home Assistant {show(since)}, newer than the stated minimum "
                      f"{show(MINIMUM[form])} for {form} discovery")
    try:
        validated = platform_schema(component)(copy.deepcopy(config))
    except vol.Invalid as exc:
        errors.append(f"{where}: {component}: {exc}")
        return
    dropped = set(config) - set(validated)
    for key in sorted(dropped):
        if key in NEWER_KEYS and release(HA_VERSION) < NEWER_KEYS[key]:
            notes.add(f"{key} (not known to Home Assistant {HA_VERSION}, ignored by it)")
        else:
            errors.append(f"{where}: {component}: key {key!r} is not part of the schema")
    if "unique_id" not in validated:
        errors.append(f"{where}: {component}: no unique_id")


def main():
    path = sys.argv[1]
    prefix = sys.argv[2] if len(sys.argv) > 2 else "homeassistant"
    with open(path) as f:
        messages = json.load(f)
    errors, notes, forms = [], set(), set()
    entities = 0
    for msg in messages:
        topic, payload = msg["topic"], msg["payload"]
        trimmed = topic.replace(f"{prefix}/", "", 1)
        match = disc.TOPIC_MATCHER.match(trimmed)
        if not match:
            errors.append(f"{topic}: not a valid discovery topic")
            continue
        component, _node_id, _object_id = match.groups()
        try:
            body = json.loads(payload)
        except ValueError as exc:
            errors.append(f"{topic}: not JSON: {exc}")
            continue
        if component == "device":
            disc._replace_all_abbreviations(body)
            forms.add("device")
            try:
                DEVICE_DISCOVERY_SCHEMA(copy.deepcopy(body))
            except vol.Invalid as exc:
                errors.append(f"{topic}: device discovery schema: {exc}")
                continue
            for key, comp in body["components"].items():
                comp = dict(comp)
                platform = comp.pop("platform")
                comp["device"] = body["device"]
                comp["origin"] = body["origin"]
                for option in SHARED_OPTIONS:
                    if option in body and option not in comp:
                        comp[option] = body[option]
                check_entity(platform, comp, f"{topic} [{key}]", errors, notes, "device")
                entities += 1
        else:
            if component not in disc.SUPPORTED_COMPONENTS:
                errors.append(f"{topic}: unsupported component {component}")
                continue
            disc._replace_all_abbreviations(body)
            try:
                MQTT_ORIGIN_INFO_SCHEMA(body["origin"])
            except (vol.Invalid, KeyError) as exc:
                errors.append(f"{topic}: origin: {exc!r}")
            forms.add("component")
            check_entity(component, body, topic, errors, notes, "component")
            entities += 1
    for note in sorted(notes):
        print(f"note: {note}")
    for e in errors:
        print(f"INVALID {e}")
    for form in sorted(forms):
        print(f"{form} discovery: valid from Home Assistant {show(MINIMUM[form])} on (SINCE table)")
    print(f"Home Assistant {HA_VERSION}: {len(messages)} messages, {entities} entities, {len(errors)} errors")
    if not messages:
        print("INVALID no messages to validate")
        return 1
    return 1 if errors else 0


async def in_home_assistant():
    # Template validation wants a running Home Assistant (as during real discovery).
    with tempfile.TemporaryDirectory() as config_dir:
        hass = HomeAssistant(config_dir)
        frame.async_setup(hass)
        return main()


if __name__ == "__main__":
    sys.exit(asyncio.run(in_home_assistant()))
