"""Who may open which door when (edge.fleet.access): rules as the desk types them, checked in one line, and read
at the kiosk in the fleet's time zone, nights past midnight included."""
import datetime

import pytest

from edge.base.errors import UserError
from edge.fleet.access import check_settings, describe_rules, door_allows, parse_days, parse_rule

pytestmark = pytest.mark.unit
BERLIN = "Europe/Berlin"


def at(day: int, hour: int, minute: int = 0) -> datetime.datetime:
    """Monday 2026-12-07 + ``day`` days, at hour:minute."""
    return datetime.datetime(2026, 12, 7 + day, hour, minute, tzinfo=datetime.timezone.utc)


def test_days_and_hours_are_read_as_the_desk_types_them():
    assert parse_days("mon-fri") == ["mon", "tue", "wed", "thu", "fri"]
    assert parse_days("fri-mon") == ["fri", "sat", "sun", "mon"]
    assert parse_days("sat,mon,sat") == ["mon", "sat"] and len(parse_days("all")) == 7
    rule = parse_rule("staff", "mon-fri", "07:00-19:00")
    assert rule == {"group": "staff", "days": ["mon", "tue", "wed", "thu", "fri"], "hours": "07:00-19:00"}
    assert describe_rules([rule]) == "staff mon,tue,wed,thu,fri 07:00-19:00"
    assert describe_rules(None) == "opens for everyone enrolled"


@pytest.mark.parametrize("rule, message", [
    (("staff", "weekdays", "07:00-19:00"), "days are all"),
    (("staff", "mon", "7-19"), "hours are HH:MM-HH:MM"),
    (("staff", "mon", "07:00-24:30"), "hours are HH:MM-HH:MM"),
    (("", "mon", "07:00-19:00"), "a group is 1 to 32"),
    (("a/b", "mon", "07:00-19:00"), "a group is 1 to 32"),
])
def test_a_wrong_rule_is_refused_in_one_line(rule, message):
    with pytest.raises(UserError, match=message) as refused:
        parse_rule(*rule)
    assert "\n" not in str(refused.value)


def test_a_door_opens_for_its_groups_on_their_days_within_their_hours():
    staff = [parse_rule("staff", "mon-fri", "07:00-19:00")]
    assert door_allows(None, frozenset(), at(0, 3))                       # a door without rules: everyone
    assert door_allows(staff, {"staff"}, at(0, 7)) and door_allows(staff, {"staff", "x"}, at(4, 18, 59))
    assert not door_allows(staff, {"staff"}, at(0, 19)) and not door_allows(staff, {"staff"}, at(5, 12))
    assert not door_allows(staff, {"visitors"}, at(0, 12)) and not door_allows(staff, frozenset(), at(0, 12))
    assert not door_allows([], {"staff"}, at(0, 12))                      # rules that let nobody in


def test_a_night_rule_runs_past_midnight_and_belongs_to_the_day_it_starts_on():
    night = [parse_rule("guards", "fri", "22:00-06:00")]
    assert door_allows(night, {"guards"}, at(4, 23)) and door_allows(night, {"guards"}, at(5, 5, 59))
    assert not door_allows(night, {"guards"}, at(5, 6)) and not door_allows(night, {"guards"}, at(4, 5))
    whole = [parse_rule("guards", "sun", "00:00-24:00")]
    assert door_allows(whole, {"guards"}, at(6, 0)) and door_allows(whole, {"guards"}, at(6, 23, 59))


def test_settings_are_known_names_of_their_type_and_a_real_time_zone():
    assert check_settings({"door_interval_s": 5, "require_liveness": True, "timezone": BERLIN})
    assert check_settings({"liveness": "planar,texture", "challenge": True}) and check_settings({"liveness": "none"})
    for settings, message in [({"door_interval": 5}, "no fleet setting 'door_interval'"),
                              ({"keep_named_days": 0}, "a number above 0"),
                              ({"require_liveness": "yes"}, "is a bool"),
                              ({"timezone": "Mars/Olympus"}, "no time zone 'Mars/Olympus'"),
                              ({"liveness": "planar,textur"}, "textur"),
                              ({"challenge": "yes"}, "is a bool")]:
        with pytest.raises(UserError, match=message):
            check_settings(settings)
