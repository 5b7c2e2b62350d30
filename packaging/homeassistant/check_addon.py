#!/usr/bin/env python3
"""Validates the add-on's config.yaml, build.yaml and translations the way the
Home Assistant Supervisor does: a transcription of SCHEMA_ADDON_CONFIG and
SCHEMA_BUILD_CONFIG (supervisor/addons/validate.py) and of its option checks
(supervisor/addons/options.py) for the keys and element types this add-on uses, and
the security rating the Supervisor shows for it (rating_security, supervisor/apps/utils.py).

Usage: check_addon.py [ADDON_DIR]; exits 1 with a list of problems; prints the rating.
"""
import re
import sys
from pathlib import Path

import voluptuous as vol
import yaml

ARCH_ALL = ["armhf", "armv7", "aarch64", "amd64", "i386"]
RE_SLUG = r"^[-_.A-Za-z0-9]+$"
RE_SERVICE = r"^(?P<service>mqtt|mysql):(?P<rights>provide|want|need)$"
RE_VOLUME = r"^(data|config|ssl|addons|backup|share|media|homeassistant_config|all_addon_configs|addon_config)(?::(rw|ro))?$"
RE_SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"|bool"
    r"|email"
    r"|url"
    r"|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>\d+)?,(?P<i_max>\d+)?\))?"
    r"|float(?:\((?P<f_min>[\d\.]+)?,(?P<f_max>[\d\.]+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)
MAP_TYPES = ["addon_config", "addons", "all_addon_configs", "backup", "config", "data",
             "homeassistant_config", "media", "share", "ssl"]
CAPABILITIES = ["BPF", "CHECKPOINT_RESTORE", "DAC_READ_SEARCH", "IPC_LOCK", "NET_ADMIN", "NET_RAW",
                "PERFMON", "SYS_ADMIN", "SYS_MODULE", "SYS_NICE", "SYS_PTRACE", "SYS_RAWIO",
                "SYS_RESOURCE", "SYS_TIME"]


def network_port(value):
    value = vol.Coerce(int)(value)
    if not 0 < value <= 65535:
        raise vol.Invalid(f"{value} is not a TCP port")
    return value


def schema_element(value):
    if not isinstance(value, str) or not RE_SCHEMA_ELEMENT.match(value):
        raise vol.Invalid(f"{value!r} is not a Supervisor schema element")
    return value


SCHEMA_ADDON_CONFIG = vol.Schema(
    {
        vol.Required("name"): str,
        vol.Required("version"): vol.All(vol.Coerce(str)),
        vol.Required("slug"): vol.Match(RE_SLUG),
        vol.Required("description"): str,
        vol.Required("arch"): [vol.In(ARCH_ALL)],
        vol.Optional("machine"): [str],
        vol.Optional("url"): vol.Url(),
        vol.Optional("startup"): vol.In(["initialize", "system", "services", "application", "once"]),
        vol.Optional("boot"): vol.In(["auto", "manual", "manual_only"]),
        vol.Optional("init"): bool,
        vol.Optional("advanced"): bool,
        vol.Optional("stage"): vol.In(["stable", "experimental", "deprecated"]),
        vol.Optional("ports"): dict,
        vol.Optional("ports_description"): dict,
        vol.Optional("webui"): str,
        vol.Optional("ingress"): bool,
        vol.Optional("ingress_port"): vol.Any(network_port, 0),
        vol.Optional("ingress_entry"): str,
        vol.Optional("ingress_stream"): bool,
        vol.Optional("panel_icon"): str,
        vol.Optional("panel_title"): str,
        vol.Optional("panel_admin"): bool,
        vol.Optional("homeassistant"): str,
        vol.Optional("host_network"): bool,
        vol.Optional("host_pid"): bool,
        vol.Optional("host_ipc"): bool,
        vol.Optional("host_uts"): bool,
        vol.Optional("host_dbus"): bool,
        vol.Optional("devices"): [str],
        vol.Optional("udev"): bool,
        vol.Optional("tmpfs"): bool,
        vol.Optional("map"): [vol.Any(
            vol.Match(RE_VOLUME),
            vol.Schema({vol.Required("type"): vol.In(MAP_TYPES), vol.Optional("read_only"): bool,
                        vol.Optional("path"): str}),
        )],
        vol.Optional("environment"): {str: str},
        vol.Optional("privileged"): [vol.In(CAPABILITIES)],
        vol.Optional("apparmor"): vol.Any(bool, str),
        vol.Optional("full_access"): bool,
        vol.Optional("audio"): bool,
        vol.Optional("video"): bool,
        vol.Optional("gpio"): bool,
        vol.Optional("usb"): bool,
        vol.Optional("uart"): bool,
        vol.Optional("devicetree"): bool,
        vol.Optional("kernel_modules"): bool,
        vol.Optional("realtime"): bool,
        vol.Optional("hassio_api"): bool,
        vol.Optional("hassio_role"): vol.In(["default", "homeassistant", "backup", "manager", "admin"]),
        vol.Optional("homeassistant_api"): bool,
        vol.Optional("stdin"): bool,
        vol.Optional("legacy"): bool,
        vol.Optional("docker_api"): bool,
        vol.Optional("auth_api"): bool,
        vol.Optional("services"): [vol.Match(RE_SERVICE)],
        vol.Optional("discovery"): [str],
        vol.Optional("backup_exclude"): [str],
        vol.Optional("image"): str,
        vol.Optional("timeout"): vol.All(int, vol.Range(min=10, max=300)),
        vol.Optional("journald"): bool,
        vol.Optional("watchdog"): str,
        vol.Required("options"): dict,
        vol.Required("schema"): vol.Any(vol.Schema({str: vol.Any(schema_element, [schema_element],
                                                              {str: schema_element})}), False),
    },
    extra=vol.PREVENT_EXTRA,  # stricter than the Supervisor (which drops unknown keys): catches typos
)

SCHEMA_BUILD_CONFIG = vol.Schema(
    {
        vol.Optional("build_from"): vol.Any(vol.Match(r"^.*$"), {vol.In(ARCH_ALL): str}),
        vol.Optional("squash"): bool,
        vol.Optional("args"): {str: str},
        vol.Optional("labels"): {str: str},
    },
    extra=vol.PREVENT_EXTRA,
)


# Capabilities that cost a point of rating (supervisor/apps/utils.py, rating_security).
RISKY_CAPABILITIES = {"BPF", "CHECKPOINT_RESTORE", "DAC_READ_SEARCH", "NET_ADMIN", "NET_RAW", "PERFMON",
                      "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_RAWIO"}


def rating_security(config, has_apparmor_profile):
    """The Supervisor's security rating, 1 (least) to 8, transcribed from rating_security in
    home-assistant/supervisor supervisor/apps/utils.py (2026-08, commit 090ef31e): the same
    terms in the same order. `signed` is always False there ("Currently no signing support")."""
    rating = 5
    if not config.get("apparmor", True):
        rating -= 1
    elif has_apparmor_profile:
        rating += 1
    if config.get("ingress", False):
        rating += 2
    elif config.get("auth_api", False):
        rating += 1
    if RISKY_CAPABILITIES & set(config.get("privileged", [])) or config.get("kernel_modules", False):
        rating -= 1
    role = config.get("hassio_role", "default")
    if role == "manager":
        rating -= 1
    elif role == "admin":
        rating -= 2
    if config.get("host_network", False):
        rating -= 1
    if config.get("host_pid", False):
        rating -= 2
    if config.get("host_uts", False) and "SYS_ADMIN" in config.get("privileged", []):
        rating -= 1
    if config.get("docker_api", False) or config.get("full_access", False):
        rating = 1
    return max(min(8, rating), 1)


def check_option(key, element, value):
    """One option value against its schema element, as supervisor/addons/options.py does."""
    m = RE_SCHEMA_ELEMENT.match(element)
    base = element.rstrip("?")
    if base == "bool":
        return isinstance(value, bool)
    if base in ("email", "url") or base.startswith(("str", "password")):
        if not isinstance(value, str):
            return False
        if base == "url":
            return value == "" or re.match(r"^[a-z][a-z0-9+.-]*://", value) is not None
        lo, hi = (m.group("s_min") or m.group("p_min")), (m.group("s_max") or m.group("p_max"))
        return (lo is None or len(value) >= int(lo)) and (hi is None or len(value) <= int(hi))
    if base == "port":
        return isinstance(value, int) and 0 < value <= 65535
    if base.startswith("int"):
        return isinstance(value, int) and not isinstance(value, bool)
    if base.startswith("float"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if m.group("match") is not None:
        return isinstance(value, str) and re.fullmatch(m.group("match"), value) is not None
    if m.group("list") is not None:
        return value in m.group("list").split("|")
    # A schema element this checker does not know cannot be vouched for.
    raise ValueError(f"option {key!r}: unknown schema element {element!r}")


def check(addon_dir):
    problems = []
    config = yaml.safe_load((addon_dir / "config.yaml").read_text())
    try:
        config = SCHEMA_ADDON_CONFIG(config)
    except vol.MultipleInvalid as e:
        problems += [f"config.yaml: {err}" for err in e.errors]
        return problems
    if config.get("ingress") and not config.get("ingress_port"):
        problems.append("config.yaml: ingress needs ingress_port")
    # The Supervisor warns and ignores these (supervisor/apps/validate.py, _warn).
    if config.get("full_access") and any(config.get(k) for k in ("devices", "uart", "usb", "gpio")):
        problems.append("config.yaml: full_access makes devices/uart/usb/gpio redundant (the Supervisor ignores them)")
    for device in config.get("devices", []):
        if not re.fullmatch(r"/dev/[^:\s]+", device):
            problems.append(f"config.yaml: devices entry {device!r} is not a /dev path (the host:container:perm form is deprecated)")
    schema, options = config["schema"], config["options"]
    for key, value in options.items():
        if key not in schema:
            problems.append(f"config.yaml: option {key} has no schema entry")
        elif not check_option(key, schema[key], value):
            problems.append(f"config.yaml: option {key}={value!r} does not match {schema[key]}")
    for key, element in schema.items():
        if not element.endswith("?") and key not in options:
            problems.append(f"config.yaml: required option {key} has no default in options")
    build = yaml.safe_load((addon_dir / "build.yaml").read_text())
    try:
        build = SCHEMA_BUILD_CONFIG(build)
        missing = set(config["arch"]) - set(build.get("build_from", {}))
        if isinstance(build.get("build_from"), dict) and missing:
            problems.append(f"build.yaml: no build_from for {sorted(missing)}")
    except vol.MultipleInvalid as e:
        problems += [f"build.yaml: {err}" for err in e.errors]
    translations = yaml.safe_load((addon_dir / "translations" / "en.yaml").read_text())
    names = translations.get("configuration", {})
    for key in schema:
        if not isinstance(names.get(key), dict) or "name" not in names[key]:
            problems.append(f"translations/en.yaml: no name for option {key}")
    for required in ("Dockerfile", "DOCS.md", "CHANGELOG.md", "icon.png", "rootfs/run.sh"):
        if not (addon_dir / required).is_file():
            problems.append(f"missing {required}")
    icon = (addon_dir / "icon.png").read_bytes() if (addon_dir / "icon.png").is_file() else b""
    if icon[:8] != b"\x89PNG\r\n\x1a\n" or int.from_bytes(icon[16:20], "big") != 128:
        problems.append("icon.png must be a 128x128 PNG")
    return problems


def main():
    addon_dir = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    problems = check(addon_dir)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    config = yaml.safe_load((addon_dir / "config.yaml").read_text())
    rating = rating_security(config, (addon_dir / "apparmor.txt").is_file())
    print(f"{addon_dir}: add-on configuration valid; security rating {rating}")


if __name__ == "__main__":
    main()
