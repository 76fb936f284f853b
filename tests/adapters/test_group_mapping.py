"""groups.yaml rules, attribute and UAP exports: every user lands in a group, or is
reported; never dropped silently."""

from datetime import UTC, datetime

import pytest
from qlik_helpers import FIXTURES, mapping

from adapters.qlik.group_mapping import (
    Decision,
    MappingError,
    build_mapping,
    parse_attributes_csv,
    parse_spec,
    parse_uap_csv,
    uap_changes,
)
from adapters.qlik.ingest import load_mapping

TS = datetime(2026, 11, 1, 9, tzinfo=UTC)


def test_rules_apply_in_order_with_directory_id_pattern_and_attributes() -> None:
    groups = mapping()
    assert groups.decide("CORP", "fin_alice") == Decision("finance", "CORP\\fin_alice", True)
    assert groups.decide("corp", "FIN_ALICE").group == "finance"  # case-insensitive, as Qlik
    assert groups.decide("CORP", "bob") == Decision("sales", "CORP\\bob", True)  # users.csv
    assert groups.decide("OTHER", "fin_x").group == "everyone"  # directory must match too


def test_unmatched_users_go_to_the_default_group_and_are_marked_unmatched() -> None:
    assert mapping().decide("CORP", "carol") == Decision("everyone", "CORP\\carol", False)


def test_without_a_default_unmatched_users_have_no_group() -> None:
    groups = build_mapping(parse_spec({"rules": [{"group": "a", "user_directory": "X"}]}))
    assert groups.decide("Y", "u") == Decision(None, "Y\\u", False)


def test_anonymous_directories_give_anonymous_sessions_r6() -> None:
    assert mapping().decide("ANON", "anon-1").user_id is None


def test_first_matching_rule_wins() -> None:
    groups = build_mapping(parse_spec({"rules": [
        {"group": "first", "user_id": "a.*"},
        {"group": "second", "user_id": "ab.*"},
    ]}))
    assert groups.decide("D", "abc").group == "first"


@pytest.mark.parametrize(("document", "needle"), [
    ({"rules": [{"group": "a"}]}, "has no condition"),
    ({"rules": [{"group": "a", "user_id": "("}]}, "rules[0].user_id"),
    ({"rules": [{"group": "a", "user_dir": "X"}]}, "user_dir"),
    ({"default": "x"}, "default"),
    ({"rules": "nope"}, "rules"),
])
def test_mistakes_in_the_mapping_file_are_explained(document: object, needle: str) -> None:
    with pytest.raises(MappingError) as info:
        build_mapping(parse_spec(document))
    assert needle in str(info.value)


def test_a_yaml_syntax_error_names_the_file(tmp_path: object) -> None:
    path = tmp_path / "groups.yaml"  # type: ignore[operator]
    path.write_text("rules: [\n")
    with pytest.raises(MappingError, match=r"groups\.yaml"):
        load_mapping(path)


def test_attribute_export_in_wide_form() -> None:
    table = parse_attributes_csv("userDirectory,userId,Department,Region\n"
                                 "CORP,bob,Sales,EMEA\n")
    assert table[("corp", "bob")] == {"department": {"Sales"}, "region": {"EMEA"}}


def test_attribute_export_in_long_form_keeps_every_value() -> None:
    table = parse_attributes_csv((FIXTURES / "users.csv").read_text())
    assert table[("corp", "bob")] == {"department": {"Sales"}, "title": {"Account manager"}}


def test_export_without_user_columns_is_explained() -> None:
    with pytest.raises(MappingError, match="userDirectory and userId"):
        parse_attributes_csv("name,department\nbob,Sales\n")


def test_uap_export_becomes_assign_allocations_r9() -> None:
    holders = parse_uap_csv((FIXTURES / "uap.csv").read_text())
    assert holders == {"CORP\\dave", "CORP\\erin"}
    changes = uap_changes(set(), holders, TS)
    assert [(c.user_id, c.action) for c in changes] == [("CORP\\dave", "assign"),
                                                        ("CORP\\erin", "assign")]


def test_uap_holders_gone_since_last_run_are_removed_first_r9() -> None:
    changes = uap_changes({"CORP\\dave", "CORP\\old"}, {"CORP\\dave", "CORP\\new"}, TS)
    assert [(c.user_id, c.action) for c in changes] == [("CORP\\old", "remove"),
                                                        ("CORP\\new", "assign")]
    assert len({c.event_id for c in changes}) == 2
