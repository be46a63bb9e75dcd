"""Owner logins (`<owner>.<name>`, one per app of an owner) in the rendered ACL: the owner's own
rights and nothing more, refused when they name no known owner or are malformed."""
from __future__ import annotations

import pytest

from doorbell.core import broker_acl


def test_an_owner_login_gets_exactly_the_owners_rules() -> None:
    rules = broker_acl.acl_rules({"dev-a": "owner-a", "dev-b": "owner-b"}, ["owner-a", "owner-b"],
                                 owner_logins=[broker_acl.owner_login("owner-a", "web")])
    assert rules["owner-a.web"] == rules["owner-a"]
    assert not any("dev-b" in t or "owner-b" in t for _a, t in rules["owner-a.web"])
    assert "user owner-a.web" in broker_acl.format_acl(rules)
    assert broker_acl.login_owner("owner-a.web") == "owner-a" and broker_acl.login_owner("owner-a") == "owner-a"


@pytest.mark.parametrize("owner, name", [("owner-a", "Web"), ("owner-a", "a.b"), ("owner-a", ""), ("owner-a", "x y"),
                                         ("owner-a", "a" * 32), ("own er", "web")])
def test_malformed_owner_logins_are_refused(owner: str, name: str) -> None:
    with pytest.raises(broker_acl.AclError):
        broker_acl.owner_login(owner, name)


def test_a_login_of_an_unknown_owner_is_refused() -> None:
    with pytest.raises(broker_acl.AclError, match="names no known owner"):
        broker_acl.acl_rules({"dev-a": "owner-a"}, ["owner-a"], owner_logins=["owner-z.web"])
    with pytest.raises(broker_acl.AclError, match="names no known owner"):
        broker_acl.acl_rules({"dev-a": "owner-a"}, ["owner-a"], owner_logins=["owner-a"])  # not a login
