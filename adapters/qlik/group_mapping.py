"""Which login access group a Qlik user's sessions go to (`groups.yaml`), and who
holds a user access pass (CSV export; the QRS list is read by `qrs`).

In the QMC, login access groups are defined by rules on user attributes; tokenpool
needs the same answer for every session. The mapping file lists ordered rules; the
first whose conditions all hold names the group. A user no rule matches goes to
`default_group` and is reported; without a default their sessions are reported and
not sent.

    default_group: everyone
    anonymous_directories: [ANON]      # sessions of these directories are anonymous (R6)
    attributes_csv: users.csv          # userDirectory, userId and attribute columns
    rules:
      - group: finance
        user_directory: CORP           # exact, case-insensitive
        user_id: "fin_.*"              # regular expression, whole id, case-insensitive
      - group: sales
        attribute: {name: department, value: Sales}
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import datetime

import msgspec

from adapters.qlik.activity import event_id, qualified_user
from schemas.inputs import UserAccess


class MappingError(ValueError):
    """The mapping file or an export cannot be used; the message says where and why."""


class AttributeCondition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    value: str


class RuleSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    group: str
    user_directory: str | None = None
    user_id: str | None = None
    attribute: AttributeCondition | None = None


class MappingSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rules: list[RuleSpec] = []
    default_group: str | None = None
    anonymous_directories: list[str] = []
    attributes_csv: str | None = None


class Rule(msgspec.Struct, frozen=True):
    group: str
    user_directory: str | None
    user_id: re.Pattern[str] | None
    attribute: tuple[str, str] | None


Attributes = dict[tuple[str, str], dict[str, set[str]]]
"""(directory, user id), lower-cased → attribute name (lower-cased) → values."""


class Decision(msgspec.Struct, frozen=True):
    """Where a user's sessions go: `group` None means nowhere (unmapped, no default)."""

    group: str | None
    user_id: str | None
    """The wire user id, `DIRECTORY\\userid`; None for anonymous directories (R6)."""
    matched: bool
    """False when no rule matched (the default group, or none, was used)."""


class GroupMapping:
    """Ordered rules, a default and the attribute table; decisions are cached per user."""

    def __init__(self, rules: list[Rule], default_group: str | None,
                 anonymous_directories: Iterable[str], attributes: Attributes) -> None:
        self.rules = rules
        self.default_group = default_group
        self.anonymous = {d.lower() for d in anonymous_directories}
        self.attributes = attributes
        self._cache: dict[tuple[str, str], Decision] = {}

    def decide(self, user_directory: str, user_id: str) -> Decision:
        key = (user_directory.lower(), user_id.lower())
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._decide(user_directory, user_id, key)
        return hit

    def _decide(self, directory: str, user: str, key: tuple[str, str]) -> Decision:
        wire_user = None if key[0] in self.anonymous else qualified_user(directory, user)
        attrs = self.attributes.get(key, {})
        for rule in self.rules:
            if rule.user_directory is not None and rule.user_directory.lower() != key[0]:
                continue
            if rule.user_id is not None and rule.user_id.fullmatch(user) is None:
                continue
            if rule.attribute is not None and rule.attribute[1].lower() not in {
                v.lower() for v in attrs.get(rule.attribute[0], ())
            }:
                continue
            return Decision(rule.group, wire_user, True)
        return Decision(self.default_group, wire_user, False)


def _rule(i: int, spec: RuleSpec) -> Rule:
    if spec.user_directory is None and spec.user_id is None and spec.attribute is None:
        raise MappingError(f"rules[{i}] (group {spec.group!r}) has no condition: give "
                           "user_directory, user_id or attribute (use default_group for "
                           "everyone else)")
    pattern = None
    if spec.user_id is not None:
        try:
            pattern = re.compile(spec.user_id, re.IGNORECASE)
        except re.error as exc:
            raise MappingError(f"rules[{i}].user_id {spec.user_id!r}: {exc}") from None
    attribute = None
    if spec.attribute is not None:
        attribute = (spec.attribute.name.lower(), spec.attribute.value)
    return Rule(spec.group, spec.user_directory, pattern, attribute)


def parse_spec(document: object) -> MappingSpec:
    """The mapping file's parsed YAML → a checked spec (unknown keys are errors)."""
    if document is None:
        document = {}
    try:
        return msgspec.convert(document, MappingSpec)
    except msgspec.ValidationError as exc:
        raise MappingError(f"groups file: {exc}") from None


def build_mapping(spec: MappingSpec, attributes_csv: str | None = None) -> GroupMapping:
    """Rules compiled, attributes loaded from the CSV export's text (if any)."""
    rules = [_rule(i, r) for i, r in enumerate(spec.rules)]
    attributes = parse_attributes_csv(attributes_csv) if attributes_csv is not None else {}
    return GroupMapping(rules, spec.default_group, spec.anonymous_directories, attributes)


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def _reader(text: str) -> csv.DictReader[str]:
    sample = text[:4096]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, ",;\t")
    except csv.Error:
        dialect = csv.excel
    return csv.DictReader(io.StringIO(text.lstrip("\ufeff")), dialect=dialect)


def _user_columns(reader: csv.DictReader[str], what: str) -> tuple[str, str, list[str]]:
    fields = list(reader.fieldnames or [])
    by_norm = {_normalise(f): f for f in fields}
    directory = by_norm.get("userdirectory")
    user = by_norm.get("userid")
    if directory is None or user is None:
        raise MappingError(f"{what}: needs columns userDirectory and userId, has "
                           f"{', '.join(fields) or 'none'}")
    return directory, user, fields


def parse_attributes_csv(text: str) -> Attributes:
    """A user attribute export: wide (one column per attribute) or long
    (`attributeType`/`attributeValue` columns, one row per value)."""
    reader = _reader(text)
    dcol, ucol, fields = _user_columns(reader, "attributes CSV")
    by_norm = {_normalise(f): f for f in fields}
    long_form = "attributetype" in by_norm and "attributevalue" in by_norm
    out: Attributes = {}
    for row in reader:
        directory, user = (row.get(dcol) or "").strip(), (row.get(ucol) or "").strip()
        if not directory or not user:
            raise MappingError(f"attributes CSV line {reader.line_num}: no user directory "
                               "or user id")
        attrs = out.setdefault((directory.lower(), user.lower()), {})
        if long_form:
            name = (row.get(by_norm["attributetype"]) or "").strip().lower()
            value = (row.get(by_norm["attributevalue"]) or "").strip()
            if name:
                attrs.setdefault(name, set()).add(value)
            continue
        for column in fields:
            if column in (dcol, ucol):
                continue
            value = (row.get(column) or "").strip()
            if value:
                attrs.setdefault(column.strip().lower(), set()).add(value)
    return out


def parse_uap_csv(text: str) -> set[str]:
    """UAP holders from a CSV export (userDirectory, userId columns) as wire user ids."""
    reader = _reader(text)
    dcol, ucol, _ = _user_columns(reader, "user access CSV")
    holders: set[str] = set()
    for row in reader:
        directory, user = (row.get(dcol) or "").strip(), (row.get(ucol) or "").strip()
        if not directory or not user:
            raise MappingError(f"user access CSV line {reader.line_num}: no user directory "
                               "or user id")
        holders.add(qualified_user(directory, user))
    return holders


def uap_changes(previous: set[str], current: set[str], ts: datetime) -> list[UserAccess]:
    """`user_access` allocations that turn `previous` holders into `current` (R9):
    removals first, so a token freed now can be reassigned in the same run."""
    stamp = ts.isoformat()
    out = [UserAccess(event_id=_uap_id("remove", u, stamp), ts=ts, user_id=u, action="remove")
           for u in sorted(previous - current)]
    out += [UserAccess(event_id=_uap_id("assign", u, stamp), ts=ts, user_id=u, action="assign")
            for u in sorted(current - previous)]
    return out


def _uap_id(action: str, user: str, stamp: str) -> str:
    return event_id("qlik-uap", f"{user}\x00{stamp}", action)

