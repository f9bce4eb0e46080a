"""Who may open which door when: the fleet's access rules and settings, set at the desk and read by every kiosk.

A door (a kiosk's id) with no rules opens for every enrolled person who is named. A door with rules opens only for
a person in one of its rules' groups, on one of the rule's days, within its hours, in the fleet's time zone
(``settings.timezone``; the kiosk's own when unset). Hours are ``HH:MM-HH:MM``; an end before the start runs past
midnight (``22:00-06:00``), and ``00:00-24:00`` is the whole day. Days are ``all``, a range (``mon-fri``) or a list
(``mon,wed,sat``); a night rule belongs to the day it starts on.

The fleet's settings are the one place for what every door shares: ``door_interval_s``, ``max_frame_age_s``,
``max_replica_age_s``, ``require_liveness`` (a kiosk running without liveness opens no door), ``liveness`` and
``challenge`` (the checks every kiosk runs, as its --liveness and --challenge: taken at start, and a change restarts
the kiosk), ``keep_unknown_days`` and ``keep_named_days`` (retention, on the kiosks and on the server), and
``timezone``.
"""
from __future__ import annotations

import datetime
import re

from edge.base.errors import UserError
from edge.runtime.boards import LIVENESS_CHECKS

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)")
GROUP = re.compile(r"[\w][\w .-]{0,31}")
# each setting: its type and what it must be
SETTINGS = {"door_interval_s": float, "max_frame_age_s": float, "max_replica_age_s": float, "require_liveness": bool,
            "liveness": str, "challenge": bool, "keep_unknown_days": float, "keep_named_days": float,
            "timezone": str}


def check_group(group: str) -> str:
    if not GROUP.fullmatch(group or ""):
        raise UserError(f"a group is 1 to 32 letters, digits, spaces, '.', '-' or '_', starting with a letter or "
                        f"digit; not {group!r}")
    return group


def parse_days(text: str) -> list[str]:
    text = text.strip().lower()
    if text == "all":
        return list(DAYS)
    if re.fullmatch(r"[a-z]{3}-[a-z]{3}", text):
        first, last = text.split("-")
        if first in DAYS and last in DAYS:
            start, end = DAYS.index(first), DAYS.index(last)
            return [DAYS[(start + i) % 7] for i in range((end - start) % 7 + 1)]
    days = text.split(",")
    if all(day in DAYS for day in days):
        return sorted(set(days), key=DAYS.index)
    raise UserError(f"days are all, a range like mon-fri or a list like mon,wed,sat; not {text!r}")


def parse_rule(group: str, days: str, hours: str) -> dict:
    """One rule, checked: ``staff mon-fri 07:00-19:00``."""
    match = HOURS.fullmatch(hours.strip())
    if match is None or (match.group(3) == "24" and match.group(4) != "00"):
        raise UserError(f"hours are HH:MM-HH:MM (00:00-24:00 is the whole day, 22:00-06:00 runs past midnight); "
                        f"not {hours!r}")
    return {"group": check_group(group), "days": parse_days(days), "hours": hours.strip()}


def describe_rules(rules: list[dict] | None) -> str:
    """A door's rules in one line, as the desk types them."""
    if rules is None:
        return "opens for everyone enrolled"
    return "; ".join(f"{r['group']} {','.join(r['days'])} {r['hours']}" for r in rules) or "opens for nobody"


def check_settings(settings: dict) -> dict:
    """Settings as the desk sets them: known names with values of their type, and a time zone that exists."""
    for name, value in settings.items():
        kind = SETTINGS.get(name)
        if kind is None:
            raise UserError(f"no fleet setting {name!r}; the settings are {', '.join(SETTINGS)}")
        if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise UserError(f"the fleet setting {name} is a number above 0, not {value!r}")
        if kind is not float and not isinstance(value, kind):
            raise UserError(f"the fleet setting {name} is a {kind.__name__}, not {value!r}")
    if "timezone" in settings:
        zone(settings["timezone"])
    if "liveness" in settings and settings["liveness"].strip() != "none":
        for name in settings["liveness"].split(","):
            LIVENESS_CHECKS.target(name.strip())         # an unknown check: the valid ones
    return settings


def zone(name: str | None):
    """The time zone rules are read in (None: the kiosk's own)."""
    if not name:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise UserError(f"no time zone {name!r} (an IANA name such as Europe/Berlin)") from err


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def rule_allows(rule: dict, groups, now: datetime.datetime) -> bool:
    if rule["group"] not in groups:
        return False
    start, end = (_minutes(part) for part in rule["hours"].split("-"))
    minute = now.hour * 60 + now.minute
    today, yesterday = DAYS[now.weekday()], DAYS[(now.weekday() - 1) % 7]
    if start <= end:
        return today in rule["days"] and start <= minute < end
    # past midnight: the evening of a listed day, or the early hours after one
    return (today in rule["days"] and minute >= start) or (yesterday in rule["days"] and minute < end)


def door_allows(rules: list[dict] | None, groups, now: datetime.datetime) -> bool:
    """Whether a named person in ``groups`` may open a door with ``rules`` (None: a door without rules) at ``now``
    (aware, in the fleet's time zone)."""
    return rules is None or any(rule_allows(rule, groups, now) for rule in rules)


def local_now(settings: dict) -> datetime.datetime:
    """Now, aware, in the fleet's time zone (the kiosk's own when it has none)."""
    fleet_zone = zone(settings.get("timezone"))
    return datetime.datetime.now(fleet_zone) if fleet_zone else datetime.datetime.now().astimezone()
